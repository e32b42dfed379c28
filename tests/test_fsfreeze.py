"""/fsfreeze and /fsthaw (spec/envd.md §3.9) on a loop-mounted ext4 image the test creates.

The machine's root filesystem is never the target: the daemon is pointed at the image with -fsfreeze-path.
A writer on a frozen filesystem blocks in the kernel until the thaw; that is what the tests watch.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from envd.errors import Internal
from envd.host.fsfreeze import FITHAW, Fsfreeze, NoFsfreeze
from tests.conftest import start_daemon, stop_daemon


@pytest.fixture
def loop_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        pytest.skip("needs root and mkfs.ext4 (e2fsprogs) to loop-mount an image")
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an image here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        fd = os.open(mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, FITHAW, 0)  # never leave it frozen, whatever the test did
        except OSError:
            pass
        finally:
            os.close(fd)
        subprocess.run(["umount", str(mnt)], check=True)


def writer(target: Path) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", f"echo data > {target}"])


def assert_blocked(child: subprocess.Popen, for_s: float = 0.5) -> None:
    time.sleep(for_s)
    assert child.poll() is None, "a write went through on a frozen filesystem"


def test_freeze_blocks_writers_until_thaw_and_both_are_idempotent(loop_fs: Path) -> None:
    async def scenario() -> None:
        fs = Fsfreeze(str(loop_fs))
        await fs.freeze()
        await fs.freeze()  # already frozen (EBUSY) counts as success
        child = writer(loop_fs / "a")
        try:
            await asyncio.to_thread(assert_blocked, child)
            await fs.thaw()
            assert await asyncio.to_thread(child.wait, 20) == 0
        finally:
            if child.poll() is None:
                child.kill()
        await fs.thaw()  # not frozen (EINVAL) counts as success
        assert (loop_fs / "a").read_text() == "data\n"

    asyncio.run(scenario())


def test_freeze_errors_name_the_operation_and_target(tmp_path: Path) -> None:
    async def scenario() -> None:
        fs = Fsfreeze(str(tmp_path / "absent"))
        with pytest.raises(Internal, match=r"FIFREEZE on .*absent: No such file or directory"):
            await fs.freeze()
        with pytest.raises(Internal, match=r"FITHAW on .*absent: No such file or directory"):
            await fs.thaw()
        # procfs cannot be frozen at all
        with pytest.raises(Internal, match="FIFREEZE on /proc: Operation not supported"):
            await Fsfreeze("/proc").freeze()

    asyncio.run(scenario())


def test_local_mode_without_a_target_touches_nothing(caplog) -> None:
    async def scenario() -> None:
        fs = NoFsfreeze()
        await fs.freeze()
        await fs.thaw()

    caplog.set_level("INFO")
    asyncio.run(scenario())
    assert caplog.text.count("no-ops in local mode") == 1


def test_daemon_fsfreeze_and_fsthaw(tmp_path: Path, loop_fs: Path) -> None:
    daemon = start_daemon(tmp_path, "-fsfreeze-path", str(loop_fs))
    child = None
    try:
        for _ in range(2):
            answer = httpx.post(f"{daemon.url}/fsfreeze", timeout=30)
            assert answer.status_code == 204 and answer.headers["cache-control"] == "no-store"
        child = writer(loop_fs / "b")
        assert_blocked(child)
        assert httpx.get(f"{daemon.url}/health", timeout=10).status_code == 204  # still serving
        for _ in range(2):
            assert httpx.post(f"{daemon.url}/fsthaw", timeout=30).status_code == 204
        assert child.wait(20) == 0
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        stop_daemon(daemon)


def test_daemon_fsfreeze_failure_is_a_json_500(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, "-fsfreeze-path", str(tmp_path / "absent"))
    try:
        answer = httpx.post(f"{daemon.url}/fsfreeze", timeout=30)
        assert answer.status_code == 500
        assert answer.json() == {"code": 500, "message": f"FIFREEZE on {tmp_path / 'absent'}: No such file or directory"}
        assert httpx.post(f"{daemon.url}/fsthaw", timeout=30).status_code == 500
        assert httpx.get(f"{daemon.url}/health", timeout=10).status_code == 204
    finally:
        stop_daemon(daemon)


def test_freeze_gives_up_waiting_for_the_lock_when_the_caller_leaves_but_thaw_waits(loop_fs: Path) -> None:
    from envd.errors import Canceled

    async def scenario() -> None:
        fs = Fsfreeze(str(loop_fs))
        gone = asyncio.Event()
        async with fs._lock:  # a freeze or thaw in progress
            attempt = asyncio.ensure_future(fs.freeze(cancelled=gone))
            thaw = asyncio.ensure_future(fs.thaw())
            await asyncio.sleep(0.1)
            gone.set()
            with pytest.raises(Canceled):
                await attempt
            assert not thaw.done()
        await asyncio.wait_for(thaw, 20)  # the thaw ran once the lock was free
        child = writer(loop_fs / "c")  # and the filesystem was never frozen
        assert await asyncio.to_thread(child.wait, 20) == 0

    asyncio.run(scenario())
