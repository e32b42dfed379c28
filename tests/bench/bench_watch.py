"""Watch latency: a file write -> the event at the async E2B SDK's watch_dir callback (debug mode).

The raw operation is the write itself (open/write/close), timed in the same run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

from .common import median, report, running_daemon

ROUNDS = 60


async def measure(url: str, folder: Path) -> tuple[list[float], list[float]]:
    os.environ.update(E2B_DEBUG="true", E2B_SANDBOX_URL=url)
    from e2b import AsyncSandbox

    sandbox = await AsyncSandbox.create()
    arrived: dict[str, float] = {}
    wake = asyncio.Event()

    def on_event(event) -> None:
        if event.name not in arrived:
            arrived[event.name] = time.perf_counter()
            wake.set()

    handle = await sandbox.files.watch_dir(str(folder), on_event=on_event)
    latencies, writes = [], []
    for i in range(ROUNDS):
        name = f"f{i}.txt"
        wake.clear()
        begin = time.perf_counter()
        with open(folder / name, "w") as f:
            f.write("x")
        writes.append(time.perf_counter() - begin)
        while name not in arrived:
            await asyncio.wait_for(wake.wait(), 5)
            wake.clear()
        latencies.append(arrived[name] - begin)
        await asyncio.sleep(0.01)
    await handle.stop()
    return latencies, writes


def run() -> bool:
    folder = Path("/home/user/envd-bench-watch")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        with running_daemon() as daemon:
            latencies, writes = asyncio.run(measure(daemon.url, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    p50 = median(latencies)
    p90 = sorted(latencies)[int(len(latencies) * 0.9)]
    return report(
        "watch latency (write -> async SDK callback)",
        f"p50 {p50 * 1000:.2f} ms, p90 {p90 * 1000:.2f} ms (the write itself {median(writes) * 1e6:.0f} us)",
        "p50 <= 50 ms",
        p50 <= 0.05,
    )
