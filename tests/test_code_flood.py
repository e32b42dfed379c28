"""A cell that floods output towards a client that does not read: envd's memory stays bounded (the kernel is
stopped, flow.py) and, once the client reads, every byte arrives in order — nothing is dropped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import start_code_daemon, stop_daemon
from tests.rss import PeakRSS
from tests.test_code_port import kernels_of

pytestmark = pytest.mark.slow

LINES = 256 * 1024
LINE = 1024  # 256 MiB in all, printed line by line: far more than envd buffers before stopping the kernel
FLOOD = f"""
import sys
for i in range({LINES}):
    sys.stdout.write('%06d' % i + 'x' * {LINE - 7} + '\\n')
"""


def wait_stopped(kernel: psutil.Process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kernel.status() == psutil.STATUS_STOPPED:
            return
        time.sleep(0.05)
    raise AssertionError("the flooding kernel was never stopped for the slow reader")


def test_flood_to_a_reader_that_waits_keeps_memory_bounded_and_loses_nothing(tmp_path: Path,
                                                                            sandbox_user: str) -> None:
    d, code_url = start_code_daemon(tmp_path, "-default-user", sandbox_user)
    try:
        [kernel] = kernels_of(d.process.pid)
        with httpx.Client(timeout=120) as client:
            # Warm up envd's execute path so the measurement below sees only buffering.
            client.post(f"{code_url}/execute", json={"code": "print(1)"}).raise_for_status()
            with PeakRSS(d.process.pid) as rss:
                with client.stream("POST", f"{code_url}/execute", json={"code": FLOOD}) as response:
                    assert response.status_code == 200
                    wait_stopped(kernel)
                    time.sleep(1)  # stopped means stopped: nothing more piles up meanwhile
                    waited_growth = rss.growth_mb
                    text = []
                    events = []
                    for line in response.iter_lines():
                        event = json.loads(line)
                        events.append(event["type"])
                        if event["type"] == "stdout":
                            text.append(event["text"])
        # Bounded = 4 MiB of queued events plus what was already in flight (ZMQ, TCP) when the kernel stopped;
        # the latter grows with machine load (10 MB idle, ~80 MB measured on a loaded 2-core run). Buffering
        # the flood would take more than its 256 MiB.
        print(f"envd grew {waited_growth:.0f} MB while the client did not read")
        assert waited_growth < 128, f"envd grew {waited_growth:.0f} MB while the client did not read"
        assert events[-1] == "end_of_execution" and "error" not in events
        lines = "".join(text).splitlines()
        assert len(lines) == LINES
        assert all(line == "%06d" % i + "x" * (LINE - 7) for i, line in enumerate(lines))
        assert kernel.status() != psutil.STATUS_STOPPED  # running again (idle) once the reader caught up
    finally:
        stop_daemon(d)
