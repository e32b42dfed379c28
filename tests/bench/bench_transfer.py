"""1 GiB through /files vs `cp` of the same file, plus the daemon's RSS growth during each transfer.

curl is the client (a C client, so the figure is envd's, not a Python client's); cp runs hot-cache like the
transfers, in the same run, on the same filesystem;
medians of 5 alternating runs, each started after `sync`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


from tests.conftest import free_port
from tests.rss import PeakRSS

from .common import report, running_daemon

SIZE = 1 << 30


def make_source(path: Path) -> None:
    block = os.urandom(1 << 20)  # incompressible, like most large files
    with open(path, "wb") as f:
        for _ in range(SIZE >> 20):
            f.write(block)


def timed_run(argv: list[str]) -> float:
    # Start every operation with no dirty pages pending, so one run's writeback does not slow the next.
    subprocess.run(["sync"], check=True)
    begin = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - begin


def run() -> bool:
    if shutil.which("curl") is None:
        print("SKIP  transfer benchmarks: curl is not installed")
        return True
    work = Path("/home/user/envd-bench")
    work.mkdir(exist_ok=True)
    src, dst = work / "src.bin", work / "dst.bin"
    ok = True
    try:
        make_source(src)
        with running_daemon() as daemon:
            port = free_port()
            raw = subprocess.Popen([sys.executable, "-m", "tests.bench.raw_receiver", str(port), str(dst)])
            time.sleep(0.5)
            best = {"cp": [], "download": [], "upload": [], "raw": []}
            growth = {"download": 0.0, "upload": 0.0}
            for _ in range(5):
                best["cp"].append(timed_run(["cp", str(src), str(dst)]))
                dst.unlink()
                with PeakRSS(daemon.process.pid) as rss:
                    best["download"].append(
                        timed_run(["curl", "-sf", "-o", str(dst), f"{daemon.url}/files?path={src}"])
                    )
                growth["download"] = max(growth["download"], rss.growth_mb)
                dst.unlink()
                with PeakRSS(daemon.process.pid) as rss:
                    best["upload"].append(timed_run([
                        "curl", "-sf", "-X", "POST", "-T", str(src), "-H", "Content-Type: application/octet-stream",
                        f"{daemon.url}/files?path={dst}",
                    ]))
                growth["upload"] = max(growth["upload"], rss.growth_mb)
                assert dst.stat().st_size == SIZE
                dst.unlink()
                best["raw"].append(timed_run([
                    "curl", "-sf", "-X", "POST", "-T", str(src), f"http://127.0.0.1:{port}/",
                ]))
                dst.unlink()
            raw.terminate()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cp = statistics.median(best["cp"])
    for name, target in (("download", 0.5), ("upload", 0.3)):
        took = statistics.median(best[name])
        ratio = cp / took
        ok &= report(
            f"1 GiB {name} via /files (curl) vs cp",
            f"{SIZE / took / 1e6:.0f} MB/s vs cp {SIZE / cp / 1e6:.0f} MB/s = {ratio:.2f}x",
            f">= {target}x",
            ratio >= target,
        )
        ok &= report(f"daemon RSS growth during {name}", f"{growth[name]:.1f} MB", "<= 20 MB", growth[name] <= 20)
    raw, upload = statistics.median(best["raw"]), statistics.median(best["upload"])
    print(
        f"INFO  reference: bare asyncio receive loop {SIZE / raw / 1e6:.0f} MB/s = {cp / raw:.2f}x cp; "
        f"envd upload = {raw / upload:.2f}x that loop"
    )
    return ok
