"""process.Process under abuse: clients that vanish, hundreds at once, readers that stall, memory hogs.

Raw Connect streams (tests/process_client.py) against a daemon of this module's own, so fd/child counts are not
disturbed by other tests. envd.md §6.2 (a client going away never kills the process), §6.5 (no subscriber ->
output discarded; back-pressure with a bounded queue; a departed subscriber is removed at once), §8.9 (user
processes capped in the `user` cgroup so a hog cannot take envd down).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import Daemon, start_daemon, stop_daemon
from tests.rss import PeakRSS
from tests.process_client import (
    JSON,
    EnvelopeBuffer,
    Outcome,
    RawStream,
    envelope,
    http_request,
    run_command,
    start_request,
)

CGROUP2_MAGIC = 0x63677270


@pytest.fixture(scope="module")
def envd(tmp_path_factory: pytest.TempPathFactory, sandbox_user: str) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("envd-faults"), "-default-user", sandbox_user)
    yield d
    close_client(d)
    stop_daemon(d)
    assert d.process.returncode == 0


_clients: dict[str, httpx.Client] = {}


def rpc(daemon: Daemon, method: str, body: dict, timeout: float = 10) -> httpx.Response:
    # One keep-alive client per daemon: a fresh httpx client costs ~30 ms, which 200 kills would feel.
    client = _clients.get(daemon.url) or _clients.setdefault(daemon.url, httpx.Client(base_url=daemon.url))
    return client.post(
        f"/process.Process/{method}",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", "connect-protocol-version": "1"},
        timeout=timeout,
    )


def close_client(daemon: Daemon) -> None:
    if client := _clients.pop(daemon.url, None):
        client.close()


def sigkill(daemon: Daemon, pid: int) -> None:
    r = rpc(daemon, "SendSignal", {"process": {"pid": pid}, "signal": "SIGNAL_SIGKILL"})
    assert r.status_code in (200, 404), r.text


def listed_pids(daemon: Daemon) -> set[int]:
    r = rpc(daemon, "List", {})
    assert r.status_code == 200, r.text
    return {p["pid"] for p in r.json().get("processes", [])}


def running(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass(frozen=True)
class Footprint:
    fds: int
    children: int
    zombies: int

    @classmethod
    def of(cls, daemon: Daemon) -> Footprint:
        proc = psutil.Process(daemon.process.pid)
        kids = proc.children(recursive=True)
        zombies = 0
        for kid in kids:
            try:
                zombies += kid.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                pass
        return cls(fds=proc.num_fds(), children=len(kids), zombies=zombies)


def settled(daemon: Daemon, baseline: Footprint, timeout: float = 15, fd_slack: int = 2) -> Footprint:
    """Wait for the daemon to return to its baseline; return the last footprint seen."""
    last = Footprint.of(daemon)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = Footprint.of(daemon)
        if last.fds <= baseline.fds + fd_slack and last.children <= baseline.children and last.zombies == 0:
            break
        time.sleep(0.2)
    return last


def warm_up(daemon: Daemon) -> Footprint:
    """Run a few commands so lazily created state (imports, executors, pools) exists before the baseline."""
    async def go():
        for _ in range(3):
            await run_command(daemon.port, start_request("/bin/true"))
    asyncio.run(go())
    listed_pids(daemon)  # opens the keep-alive RPC connection, so it is part of the baseline
    time.sleep(0.5)
    return Footprint.of(daemon)


@pytest.mark.slow
def test_disconnected_clients_leave_processes_running_and_nothing_leaks(envd):
    baseline = warm_up(envd)
    clients = 200

    async def attach_and_vanish(i: int, gate: asyncio.Semaphore) -> int:
        async with gate:
            stream = await RawStream.open(
                envd.port, "process.Process/Start",
                start_request("/bin/sh", ["-c", f"echo started-{i}; while :; do echo tick; sleep 0.5; done"]),
            )
            assert stream.status == 200
            outcome = Outcome()
            while outcome.pid is None or not outcome.stdout:
                item = await stream.next_envelope()
                assert item is not None, "stream ended before any output"
                outcome.add(item[0], json.loads(item[1]))
            assert outcome.stdout.startswith(f"started-{i}\n".encode())
            # Half the clients close politely (FIN), half vanish with a reset, mid-stream.
            if i % 2:
                stream.abort()
            else:
                await stream.close()
            return outcome.pid

    async def go() -> list[int]:
        gate = asyncio.Semaphore(40)
        return await asyncio.gather(*(attach_and_vanish(i, gate) for i in range(clients)))

    pids = asyncio.run(go())
    assert len(set(pids)) == clients
    try:
        time.sleep(1.5)  # several ticks with nobody listening: output must be discarded, not block the child
        dead = [pid for pid in pids if not running(pid)]
        assert not dead, f"{len(dead)} processes died when their client disconnected (envd.md §6.2): {dead[:5]}"
        assert set(pids) <= listed_pids(envd)
        assert httpx.get(f"{envd.url}/health", timeout=5).status_code == 204
    finally:
        for pid in pids:
            sigkill(envd, pid)
    assert wait_until(lambda: not any(running(p) for p in pids), 15), "killed processes still running"
    assert wait_until(lambda: not (set(pids) & listed_pids(envd)), 10), "killed processes still listed"
    after = settled(envd, baseline)
    assert after.zombies == 0, f"zombies left behind: {after}"
    assert after.children <= baseline.children, f"children left behind: {after} vs {baseline}"
    assert after.fds <= baseline.fds + 2, f"fd leak: {after.fds} open vs {baseline.fds} before"


@pytest.mark.slow
def test_500_concurrent_commands_all_complete_correctly(envd):
    count = 500

    def script(i: int) -> str:
        return f"echo out-{i}; echo err-{i} >&2; exit {i % 7}"

    async def go() -> list[Outcome]:
        return await asyncio.gather(
            *(run_command(envd.port, start_request("/bin/sh", ["-c", script(i)])) for i in range(count))
        )

    begin = time.monotonic()
    outcomes = asyncio.run(go())
    elapsed = time.monotonic() - begin
    print(f"{count} concurrent commands in {elapsed:.1f} s")
    bad = []
    for i, o in enumerate(outcomes):
        code = i % 7
        expected_end = {"exited": True, "status": f"exit status {code}"}
        if code:
            expected_end |= {"exitCode": code, "error": f"exit status {code}"}
        if (
            o.order[0] != "start" or o.order[-1] != "end" or not o.pid
            or bytes(o.stdout) != f"out-{i}\n".encode() or bytes(o.stderr) != f"err-{i}\n".encode()
            or o.end != expected_end or o.trailer != {}
        ):
            bad.append((i, o))
    assert not bad, f"{len(bad)} of {count} wrong, first: {bad[0]}"
    assert len({o.pid for o in outcomes}) == count
    assert elapsed < 90


def open_slow_reader(daemon: Daemon, request: dict) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", daemon.port))
    sock.sendall(http_request("process.Process/Start", envelope(json.dumps(request).encode()), JSON))
    return sock


def read_start_pid(sock: socket.socket) -> int:
    """Read byte by byte up to the first envelope and return the pid of its start event."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(1)
    assert data.startswith(b"HTTP/1.1 200"), data
    # First chunk: size line, then the envelope.
    line = b""
    while not line.endswith(b"\r\n"):
        line += sock.recv(1)
    size = int(line.split(b";")[0], 16)
    chunk = b""
    while len(chunk) < size:
        chunk += sock.recv(size - len(chunk))
    envelopes = EnvelopeBuffer().feed(chunk)
    assert envelopes, "first chunk holds no whole envelope"
    return json.loads(envelopes[0][1])["event"]["start"]["pid"]


@pytest.mark.slow
def test_slow_reader_of_a_fast_writer_keeps_daemon_memory_bounded(envd):
    sock = open_slow_reader(envd, start_request("/bin/sh", ["-c", "yes | head -c 2G"]))
    pid = read_start_pid(sock)
    try:
        with PeakRSS(envd.process.pid) as rss:
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:  # a trickle: 1 byte every 10 ms
                assert sock.recv(1)
                time.sleep(0.01)
            time.sleep(2)  # then not reading at all
            # The daemon keeps serving others while one subscriber is stuck.
            assert httpx.get(f"{envd.url}/health", timeout=5).status_code == 204
            quick = asyncio.run(run_command(envd.port, start_request("/bin/echo", ["still-serving"])))
            assert bytes(quick.stdout) == b"still-serving\n"
        print(f"daemon RSS growth with a stalled reader: {rss.growth_mb:.1f} MB")
        assert rss.growth_mb < 50, f"daemon RSS grew {rss.growth_mb:.0f} MB behind a stalled reader (§6.5 back-pressure)"
        assert running(pid), "the writer should be blocked by back-pressure, not gone"
    finally:
        sock.close()
        sigkill(envd, pid)
    assert wait_until(lambda: not running(pid), 10)


@pytest.mark.slow
def test_output_with_no_subscriber_is_discarded_at_full_speed(envd):
    # §6.5: with no subscriber the output is read and dropped, so the writer never blocks and finishes.
    sock = open_slow_reader(envd, start_request("/bin/sh", ["-c", "head -c 1G /dev/zero"]))
    pid = read_start_pid(sock)
    with PeakRSS(envd.process.pid) as rss:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # reset: the subscriber is gone
        finished = wait_until(lambda: not running(pid), 40, interval=0.1)
    if not finished:
        sigkill(envd, pid)
    assert finished, "a process with no subscriber stayed blocked on its output pipe"
    # It finished on its own (exit 0), rather than being killed when its client left (§6.2); the retained
    # end event (§6.1, 30 s) says so.
    retained = asyncio.run(connect_outcome(envd, pid))
    assert retained.end == {"exited": True, "status": "exit status 0"}, retained
    print(f"daemon RSS growth while discarding 1 GiB: {rss.growth_mb:.1f} MB")
    assert rss.growth_mb < 50


async def connect_outcome(daemon: Daemon, pid: int) -> Outcome:
    stream = await RawStream.open(daemon.port, "process.Process/Connect", {"process": {"pid": pid}})
    try:
        return await stream.collect()
    finally:
        await stream.close()


def memory_cgroup_missing(root: Path = Path("/sys/fs/cgroup")) -> str | None:
    """Why a memory-capped `user` cgroup cannot exist here, or None when it can."""
    import ctypes
    import ctypes.util

    class StatFs(ctypes.Structure):  # struct statfs begins with `long f_type` on Linux
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    buf = StatFs()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.statfs(str(root).encode(), ctypes.byref(buf)) != 0:
        return f"statfs({root}) failed: {os.strerror(ctypes.get_errno())}"
    if buf.f_type != CGROUP2_MAGIC:
        return f"{root} is not a cgroup v2 filesystem (statfs magic {buf.f_type:#x}, want {CGROUP2_MAGIC:#x})"
    controllers = (root / "cgroup.controllers").read_text().split()
    if "memory" not in controllers:
        return f"the memory controller is not available in {root}/cgroup.controllers ({' '.join(controllers)})"
    return None


@pytest.mark.slow
def test_memory_hog_in_user_cgroup_does_not_take_envd_down(tmp_path: Path, sandbox_user: str):
    reason = memory_cgroup_missing()
    if reason:
        print(f"skipping the memory-hog test: {reason}")
        pytest.skip(reason)
    daemon = start_daemon(tmp_path, "-default-user", sandbox_user)
    user_cg = Path("/sys/fs/cgroup/user")
    original: dict[str, str] = {}
    try:
        assert wait_until(user_cg.is_dir, 5), "envd did not create the `user` cgroup (§8.9)"
        # The real cap is MemTotal - 128 MiB; lower it so the hog hits it without starving this machine.
        for name in ("memory.high", "memory.max"):
            original[name] = (user_cg / name).read_text().strip()
            (user_cg / name).write_text(str(256 << 20))
        hog = "import time; chunks = []\nwhile True: chunks.append(b'x' * (16 << 20)); time.sleep(0.001)"

        async def go() -> Outcome:
            return await run_command(daemon.port, start_request("/usr/bin/python3", ["-c", hog]))

        with PeakRSS(daemon.process.pid) as rss:
            outcome = asyncio.run(asyncio.wait_for(go(), 60))
        assert outcome.end and outcome.end.get("status") == "signal: killed", outcome.end
        assert daemon.process.poll() is None, "envd died"
        assert httpx.get(f"{daemon.url}/health", timeout=5).status_code == 204
        after = asyncio.run(run_command(daemon.port, start_request("/bin/echo", ["alive"])))
        assert bytes(after.stdout) == b"alive\n"
        assert rss.growth_mb < 50
    finally:
        for name, value in original.items():
            (user_cg / name).write_text(value)
        close_client(daemon)
        stop_daemon(daemon)
