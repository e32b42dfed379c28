"""Daemon start (exec -> /health 204) and idle RSS, against a bare interpreter start in the same run."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time

import psutil

from tests.conftest import free_port

from .common import median, report, timed


def start_and_wait(port: int, run_dir: str) -> tuple[subprocess.Popen, float]:
    """Exec the daemon and poll /health with raw sockets every 2 ms (httpx polling would add its own cost)."""
    begin = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "envd", "-isnotfc", "-port", str(port), "-host", "127.0.0.1", "-run-dir", run_dir],
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n")
                if b" 204 " in sock.recv(128):
                    return process, time.perf_counter() - begin
        except OSError:
            time.sleep(0.002)


def run() -> bool:
    interpreter = median(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 5))
    starts, rss = [], []
    for _ in range(7):
        with tempfile.TemporaryDirectory() as tmp:
            process, elapsed = start_and_wait(free_port(), tmp)
            starts.append(elapsed)
            time.sleep(0.5)
            rss.append(psutil.Process(process.pid).memory_info().rss)
            process.terminate()
            process.wait()
    start = median(starts)
    idle = median(rss) / 2**20
    ok = report(
        "daemon start (exec -> /health 204), median of 7",
        f"{start * 1000:.0f} ms = {start / interpreter:.1f}x bare `python -c pass` ({interpreter * 1000:.0f} ms)",
        "<= 400 ms",
        start <= 0.4,
    )
    ok &= report("idle RSS", f"{idle:.1f} MB", "<= 50 MB", idle <= 50)
    return ok
