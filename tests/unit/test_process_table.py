"""Process table and handles (spec/envd.md §6.1, §6.5-6.12) with real children: end detection, exit texts,
retention, lifetime, signals, stdin/PTY input, resize, tags — and no zombies or fds left behind."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from envd.auth.users import lookup_user
from envd.errors import Internal, InvalidArgument, NotFound, Unknown
from envd.services.process import table as table_module
from envd.services.process.exit_status import ExitStatus, signal_name
from envd.services.process.fanout import Chunk
from envd.services.process.process import ProcessConfig
from envd.services.process.spawn import TerminalSize
from envd.services.process.table import Ended, ProcessTable, StartOptions
from envd.state import SandboxState

pytestmark = pytest.mark.asyncio


# -- exit status texts (§6.5) ---------------------------------------------------------------------


async def test_exit_status_texts() -> None:
    assert ExitStatus.from_wait_status(0) == ExitStatus(0, True, "exit status 0", None)
    assert ExitStatus.from_wait_status(3 << 8) == ExitStatus(3, True, "exit status 3", "exit status 3")
    assert ExitStatus.from_wait_status(9) == ExitStatus(-1, False, "signal: killed", "signal: killed")
    core = ExitStatus.from_wait_status(11 | 0x80)
    assert core.status == core.error == "signal: segmentation fault (core dumped)"
    assert ExitStatus.from_wait_status(34).status == "signal: signal 34"
    assert [signal_name(n) for n in (1, 2, 6, 13, 15, 19, 31)] == [
        "hangup", "interrupt", "aborted", "broken pipe", "terminated", "stopped (signal)", "bad system call"
    ]


# -- a table with real children -------------------------------------------------------------------


@pytest_asyncio.fixture
async def table():
    t = ProcessTable(SandboxState(default_user="user"))
    yield t
    for handle in t:
        if handle.poll() is None:
            handle.kill()
            await asyncio.wait_for(handle.wait(), 5)
    await t.close()


def sh(script: str, **options) -> StartOptions:
    return StartOptions(config=ProcessConfig(cmd="/bin/sh", args=("-c", script)), user=lookup_user("user"), **options)


async def drain(subscriber, timeout: float = 10) -> tuple[dict[str, bytes], ExitStatus]:
    """Everything until the end: output per stream, then the exit status."""
    output: dict[str, bytes] = {}
    while True:
        item = await subscriber.get(timeout)
        assert item is not None, f"no end within {timeout}s"
        if isinstance(item, Chunk):
            output[item.stream] = output.get(item.stream, b"") + item.data
        else:
            return output, item


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_output_then_end_and_the_child_is_reaped(table) -> None:
    handle, sub = await table.start(sh("echo out; echo err >&2; exit 4", stdin=False))
    output, status = await drain(sub)
    assert output == {"stdout": b"out\n", "stderr": b"err\n"}
    assert status == ExitStatus(4, True, "exit status 4", "exit status 4")
    assert handle.poll() == status and await handle.wait() == status
    assert gone(handle.pid)  # reaped: not even a zombie
    assert len(table) == 0


async def test_first_pty_output_is_never_lost(table) -> None:
    for _ in range(10):
        _, sub = await table.start(sh("printf first", pty=TerminalSize(80, 24)))
        output, status = await drain(sub)
        assert output == {"pty": b"first"} and status.exit_code == 0


async def test_background_descendant_holding_stdout_delays_the_end(table) -> None:
    handle, sub = await table.start(sh("sleep 0.6 & echo started", stdin=False))
    assert await sub.get(5) == Chunk("stdout", b"started\n")
    await asyncio.sleep(0.2)
    assert zombie(handle.pid)  # exited, but its output is still open: listed, not ended (§6.5)
    assert handle in list(table) and handle.poll() is None
    _, status = await drain(sub)
    assert status.exit_code == 0 and gone(handle.pid)


async def test_sigkill_ends_without_waiting_for_output_eof(table) -> None:
    handle, sub = await table.start(sh("sleep 30 & echo $!; sleep 30", stdin=False))
    background = int((await sub.get(5)).data)
    try:
        handle.kill()
        _, status = await drain(sub, timeout=5)
        assert status == ExitStatus(-1, False, "signal: killed", "signal: killed")
        assert gone(handle.pid)
        with pytest.raises(Internal, match="^error sending signal"):
            handle.send_signal(signal.SIGTERM)
        assert not gone(background)  # §6.11: the pid only
    finally:
        os.kill(background, signal.SIGKILL)


async def test_sigterm_and_other_signals(table) -> None:
    handle, sub = await table.start(sh("trap 'echo got USR1' USR1; while :; do sleep 0.05; done", stdin=False))
    await asyncio.sleep(0.2)
    handle.send_signal(signal.SIGUSR1)  # not an ending signal: the process goes on
    assert await sub.get(5) == Chunk("stdout", b"got USR1\n")
    handle.terminate()
    _, status = await drain(sub)
    assert status.status == "signal: terminated" and status.exit_code == -1


async def test_lifetime_limit_kills_the_pid(table) -> None:
    handle, sub = await table.start(sh("exec sleep 30", stdin=False, lifetime=0.3))
    _, status = await drain(sub, timeout=5)
    assert status.status == "signal: killed"
    assert gone(handle.pid)


async def test_lifetime_kills_even_without_subscribers(table) -> None:
    handle, sub = await table.start(sh("exec sleep 30", stdin=False, lifetime=0.2))
    sub.close()
    status = await asyncio.wait_for(handle.wait(), 5)
    assert status.status == "signal: killed"


async def test_retention_and_eviction(table, monkeypatch) -> None:
    monkeypatch.setattr(table_module, "RETAIN_SECONDS", 0.3)
    handle, sub = await table.start(sh("exit 1", tag="job", stdin=False))
    await drain(sub)
    ended = table.find(pid=handle.pid)
    assert isinstance(ended, Ended) and ended.status.exit_code == 1
    assert table.find(tag="job") == ended
    with pytest.raises(NotFound, match=f"^process with pid {handle.pid} not found$"):
        table.get(pid=handle.pid)  # only live processes take input or signals
    # A new process with the same tag evicts the retained exit.
    other, sub2 = await table.start(sh("sleep 5", tag="job", stdin=False))
    assert table.find(tag="job") is other
    if other.pid != handle.pid:
        with pytest.raises(NotFound):
            table.find(pid=handle.pid)  # evicted along with its tag
    other.kill()
    await drain(sub2)
    await asyncio.sleep(0.5)
    with pytest.raises(NotFound, match="^process with tag job not found$"):
        table.find(tag="job")


async def test_tag_lookup_finds_any_live_carrier(table) -> None:
    handles = []
    for tag in ("a", "b", None, "c"):
        h, _ = await table.start(sh("sleep 5", tag=tag, stdin=False))
        handles.append(h)
    assert table.get(tag="c") is handles[3]  # §6.12: not stopped by other tags on the way
    assert table.get(tag="a") is handles[0]
    with pytest.raises(NotFound, match="^process with tag d not found$"):
        table.get(tag="d")


async def test_stdin_write_close_and_errors(table) -> None:
    handle, sub = await table.start(sh("cat"))
    await handle.write_stdin(b"hello\n")
    assert await sub.get(5) == Chunk("stdout", b"hello\n")
    with pytest.raises(Internal, match="^error writing to tty: tty not assigned to process"):
        await handle.write_pty(b"x")
    with pytest.raises(Internal, match="^error resizing tty: tty not assigned to process$"):
        handle.resize(TerminalSize(80, 24))
    handle.close_stdin()
    handle.close_stdin()  # idempotent
    _, status = await drain(sub)
    assert status.exit_code == 0
    with pytest.raises(Internal, match="^error writing to stdin: stdin not enabled or closed$"):
        await handle.write_stdin(b"late")


async def test_stdin_disabled(table) -> None:
    handle, sub = await table.start(sh("cat", stdin=False))
    with pytest.raises(Internal, match="^error writing to stdin: stdin not enabled or closed$"):
        await handle.write_stdin(b"x")
    handle.close_stdin()  # nothing to close: still fine
    _, status = await drain(sub)
    assert status.exit_code == 0  # cat read /dev/null


async def test_large_stdin_write_waits_for_room(table) -> None:
    handle, sub = await table.start(sh("cat"))
    payload = os.urandom(1 << 20)  # 16x a pipe buffer: the write must wait while cat and we drain
    writer = asyncio.ensure_future(handle.write_stdin(payload))
    got = b""
    while len(got) < len(payload):
        item = await sub.get(5)
        got += item.data
    await asyncio.wait_for(writer, 5)
    assert got == payload
    handle.close_stdin()
    await drain(sub)


async def test_pty_input_resize_and_ctrl_d(table) -> None:
    handle, sub = await table.start(sh("stty size; read line; echo got:$line; stty size; cat", pty=TerminalSize(80, 24)))
    assert (await sub.get(5)).data == b"24 80\r\n"
    with pytest.raises(Internal, match="^error writing to stdin: tty assigned to process"):
        await handle.write_stdin(b"x")
    with pytest.raises(Unknown, match=r"^error closing stdin: cannot close stdin for PTY process"):
        handle.close_stdin()
    handle.resize(TerminalSize(cols=100, rows=30))
    await handle.write_pty(b"abc\n")
    seen = b""
    while b"30 100" not in seen:
        seen += (await sub.get(5)).data
    assert b"got:abc" in seen
    await handle.write_pty(b"\x04")  # Ctrl+D ends cat
    _, status = await drain(sub)
    assert status.exit_code == 0


async def test_bad_cwd_and_path_errors(table) -> None:
    with pytest.raises(InvalidArgument, match="^cwd '/nonexistent/dir' does not exist$"):
        await table.start(StartOptions(config=ProcessConfig(cmd="true", cwd="/nonexistent/dir"), user=lookup_user("user")))
    with pytest.raises(InvalidArgument, match="cannot expand user-specific home dir"):
        await table.start(StartOptions(config=ProcessConfig(cmd="true", cwd="~other/x"), user=lookup_user("user")))
    assert len(table) == 0


async def test_relative_cwd_and_default_workdir(table) -> None:
    _, sub = await table.start(StartOptions(config=ProcessConfig(cmd="pwd"), user=lookup_user("user")))
    output, _ = await drain(sub)
    assert output["stdout"] == b"/home/user\n"
    table._state.default_workdir = "/tmp"
    _, sub = await table.start(StartOptions(config=ProcessConfig(cmd="pwd"), user=lookup_user("user")))
    output, _ = await drain(sub)
    assert output["stdout"] == b"/tmp\n"


async def test_no_fds_or_zombies_left_after_many_processes(table) -> None:
    pids = []

    async def one(i: int) -> None:
        options = sh("echo hi; cat", pty=TerminalSize(80, 24)) if i % 2 else sh("echo hi")
        handle, sub = await table.start(options)
        pids.append(handle.pid)
        if i % 3 == 0:
            handle.kill()
        elif i % 2:
            await handle.write_pty(b"\x04")
        else:
            handle.close_stdin()
        await drain(sub)

    await one(0), await one(1)
    before = len(os.listdir("/proc/self/fd"))
    await asyncio.gather(*(one(i) for i in range(30)))
    assert len(os.listdir("/proc/self/fd")) == before
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # every child was reaped


async def test_close_detaches_without_killing() -> None:
    t = ProcessTable(SandboxState(default_user="user"))
    handle, sub = await t.start(sh("exec sleep 30", stdin=False))
    await t.close()
    with pytest.raises(Exception, match="shutting down"):
        await sub.get(1)
    assert not gone(handle.pid)
    os.kill(handle.pid, signal.SIGKILL)
    os.waitpid(handle.pid, 0)


class RecordingCgroups:
    """Hands out plain files as `cgroup.procs` and remembers which kinds were asked for."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.asked: list[str] = []

    def procs_path(self, kind: str) -> str | None:
        self.asked.append(kind)
        path = self.directory / f"{kind}.procs"
        path.touch()
        return str(path)

    def group_path(self, kind: str) -> str | None:
        return None


async def test_children_are_placed_by_kind_and_system_ones_are_not(tmp_path) -> None:
    cgroups = RecordingCgroups(tmp_path)
    t = ProcessTable(SandboxState(default_user="user"), cgroups)
    try:
        pipe, sub = await t.start(sh("echo placed", stdin=False))
        assert (await drain(sub))[0] == {"stdout": b"placed\n"}
        terminal, sub = await t.start(sh("echo placed", pty=TerminalSize(80, 24)))
        await drain(sub)
        system, sub = await t.start(sh("echo unplaced", tag="_system", stdin=False))
        await drain(sub)
    finally:
        await t.close()
    assert cgroups.asked == ["user", "pty"]  # §6.1: `_system` stays in envd's cgroup
    assert (tmp_path / "user.procs").read_text() == str(pipe.pid)
    assert (tmp_path / "pty.procs").read_text() == str(terminal.pid)


async def test_blocked_write_fails_cleanly_on_close_stdin_or_exit(table) -> None:
    handle, sub = await table.start(sh("exec sleep 30"))  # never reads its stdin
    writer = asyncio.ensure_future(handle.write_stdin(b"x" * (1 << 20)))
    await asyncio.sleep(0.2)
    assert not writer.done()  # waiting for room in the full pipe
    handle.close_stdin()
    with pytest.raises(Internal, match="^error writing to stdin: stdin not enabled or closed$"):
        await asyncio.wait_for(writer, 5)
    handle.kill()
    await drain(sub)

    handle, sub = await table.start(sh("exec sleep 30"))
    writer = asyncio.ensure_future(handle.write_stdin(b"x" * (1 << 20)))
    await asyncio.sleep(0.2)
    handle.kill()
    with pytest.raises(Internal, match="^error writing to stdin: (write: broken pipe|stdin not enabled or closed)$"):
        await asyncio.wait_for(writer, 5)
    await drain(sub)
