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


def wait_health(port: int, status: bytes) -> None:
    """Poll /health with raw sockets every 2 ms (httpx polling would add its own cost)."""
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n")
                if b" " + status + b" " in sock.recv(128):
                    return
        except OSError:
            pass
        time.sleep(0.002)


def start_and_wait(port: int, run_dir: str, code_port: int = 0) -> tuple[subprocess.Popen, float]:
    begin = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "envd", "-isnotfc", "-port", str(port), "-host", "127.0.0.1", "-run-dir", run_dir,
         "-code-port", str(code_port)],
        stderr=subprocess.DEVNULL,
    )
    wait_health(port, b"204")
    return process, time.perf_counter() - begin


def code_port_rss() -> tuple[float, float]:
    """With the code port on: envd's /health time, and idle RSS once the default python context is up (the
    kernel is its own process and not counted; jupyter-client + zmq inside envd are)."""
    with tempfile.TemporaryDirectory() as tmp:
        code_port = free_port()
        process, elapsed = start_and_wait(free_port(), tmp, code_port)
        wait_health(code_port, b"200")
        time.sleep(0.5)
        rss = psutil.Process(process.pid).memory_info().rss
        process.terminate()
        process.wait()
    return elapsed, rss / 2**20


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
    ok &= report("idle RSS (code port off)", f"{idle:.1f} MB", "<= 50 MB", idle <= 50)
    code_start, code_rss = code_port_rss()
    report("start with the code port on (/health 204)", f"{code_start * 1000:.0f} ms", "<= 400 ms (report)",
           code_start <= 0.4)
    report("idle RSS, code port on, default context up", f"{code_rss:.1f} MB (kernel process not counted)",
           "report only", True)
    return ok
