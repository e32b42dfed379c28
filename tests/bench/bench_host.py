"""Host control costs against the raw operations, measured in the same run.

- Port scan, steady state (what envd pays every second): parsing /proc/net/tcp{,6} plus the owner cache,
  against reading the two files raw, and against psutil.net_connections (the library way: it resolves owners
  by walking every process's fds on every call).
- Freeze + thaw of the legacy set (two groups, waiting for `frozen 1`) through the core and through
  POST /freeze + /unfreeze, against writing and polling the cgroup files by hand. Needs a cgroup2 mount
  (a private group under it, removed afterwards); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from envd.host.freezer import Freezer, is_frozen
from envd.host.ports import PortForwarder
from tests.conftest import start_daemon, stop_daemon

from .common import median, report, timed


def _read_raw() -> None:
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            f.read()


def bench_scan() -> bool:
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(5)]
    try:
        forwarder = PortForwarder(address="203.0.113.77")
        forwarder._wanted()  # fills the owner cache, as the first scan does
        raw = median(timed(_read_raw, 200))
        scan = median(timed(forwarder._wanted, 200))
        library = median(timed(lambda: psutil.net_connections("tcp"), 20))
    finally:
        for sock in listeners:
            sock.close()
    procs = len(psutil.pids())
    ok = report("port scan, steady state (median of 200)",
                f"{scan * 1e6:.0f} us = {scan / raw:.1f}x raw read ({raw * 1e6:.0f} us)", "<= 3x raw", scan <= 3 * raw)
    report("  psutil.net_connections for comparison",
           f"{library * 1e6:.0f} us = {library / scan:.0f}x our scan ({procs} processes)", "report only", True)
    return ok


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, mountpoint, fstype, options, *_ = line.split()
            if fstype == "cgroup2" and "rw" in options.split(","):
                return Path(mountpoint)
    return None


def _raw_round_trip(groups: list[Path]) -> None:
    for group in groups:
        (group / "cgroup.freeze").write_text("1")
    while not all(is_frozen(str(group)) for group in groups):
        time.sleep(0.002)
    for group in groups:
        (group / "cgroup.freeze").write_text("0")


def bench_freeze() -> bool:
    mount = _cgroup2_mount()
    if mount is None:
        return report("freeze + thaw", "skipped: no cgroup2 mount", "-", True)
    root = mount / f"envd-bench-{os.getpid()}"
    root.mkdir()
    groups = [root / "user", root / "ptys", root / "socats"]
    for group in groups:
        group.mkdir()
    children = [psutil.Popen(["sleep", "60"]) for _ in range(4)]
    try:
        for index, child in enumerate(children):
            (groups[index % 2] / "cgroup.procs").write_text(str(child.pid))
        raw = median(timed(lambda: _raw_round_trip(groups[:2]), 30))
        freezer = Freezer(str(root), [str(g) for g in groups[:2]])

        async def core_round_trip() -> None:
            await freezer.freeze("legacy", 512, 5000)
            await freezer.thaw()

        loop = asyncio.new_event_loop()
        core = median(timed(lambda: loop.run_until_complete(core_round_trip()), 30))
        loop.run_until_complete(freezer.close())
        loop.close()
        with tempfile.TemporaryDirectory(prefix="envd-bench-") as tmp:
            daemon = start_daemon(Path(tmp), "-cgroup-root", str(root))
            try:
                with httpx.Client(base_url=daemon.url, timeout=30) as client:
                    def http_round_trip() -> None:
                        assert client.post("/freeze", params={"maxWaitMs": 5000}).json()["frozen"] == 2
                        assert client.post("/unfreeze").status_code == 204

                    http_round_trip()
                    http = median(timed(http_round_trip, 30))
            finally:
                stop_daemon(daemon)
    finally:
        for child in children:
            child.kill()
            child.wait()
        for group in groups:
            (group / "cgroup.freeze").write_text("0")
            group.rmdir()
        root.rmdir()
    ok = report("freeze + thaw, core (2 groups, median of 30)",
                f"{core * 1000:.2f} ms = {core / raw:.1f}x raw file ops ({raw * 1000:.2f} ms)", "<= 5x raw",
                core <= 5 * raw)
    report("freeze + thaw over HTTP (/freeze, /unfreeze)",
           f"{http * 1000:.2f} ms = {http / raw:.1f}x raw file ops", "report only", True)
    return ok


def run() -> bool:
    ok = bench_scan()
    ok &= bench_freeze()
    return ok


if __name__ == "__main__":
    run()
