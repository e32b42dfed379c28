"""GET /metrics figures (spec/envd.md §3.3), computed on demand."""

from __future__ import annotations

import os
import time

import psutil


def prime_cpu_sampler() -> None:
    # cpu_used_pct is "since the previous sample"; take the first one at start-up.
    psutil.cpu_percent(interval=None)


def collect() -> dict[str, int | float]:
    mem = psutil.virtual_memory()
    disk = os.statvfs("/")
    mem_used = mem.total - mem.available
    return {
        "ts": int(time.time()),
        "cpu_count": psutil.cpu_count(logical=True) or 1,
        "cpu_used_pct": round(psutil.cpu_percent(interval=None), 2),
        "mem_total_mib": mem.total // 1048576,
        "mem_used_mib": mem_used // 1048576,
        "mem_total": mem.total,
        "mem_used": mem_used,
        # psutil's `cached` on Linux is Cached + SReclaimable, the spec's definition.
        "mem_cache": mem.cached,
        "disk_used": (disk.f_blocks - disk.f_bavail) * disk.f_frsize,
        "disk_total": disk.f_blocks * disk.f_frsize,
    }
