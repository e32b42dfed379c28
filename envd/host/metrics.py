"""The /metrics figures (spec/envd.md §3.3) from psutil: one core behind REST /metrics and the metrics RPCs.

Blocking (psutil reads /proc, statvfs): callers run `take_sample` in a thread.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Sample:
    # Field order = the key order of GET /metrics.
    ts: int
    cpu_count: int
    cpu_used_pct: float
    mem_total_mib: int
    mem_used_mib: int
    mem_total: int
    mem_used: int
    mem_cache: int
    disk_used: int
    disk_total: int

    def as_json(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)


def busy_pct(prev, now) -> float:
    """§3.3: busy share of the `cpu` line between two psutil.cpu_times(), guest time excluded."""
    prev_total, prev_busy = _total_busy(prev)
    total, busy = _total_busy(now)
    if busy <= prev_busy:
        return 0.0
    if total <= prev_total:
        return 100.0
    return round(min(100.0, max(0.0, (busy - prev_busy) / (total - prev_total) * 100)), 2)


def _total_busy(t) -> tuple[float, float]:
    total = t.user + t.nice + t.system + t.idle + t.iowait + t.irq + t.softirq + t.steal
    return total, total - t.idle - t.iowait


class CpuBaseline:
    """cpu_used_pct is "since the previous sample" of a baseline: REST /metrics and Get share one (§3.3),
    each Watch sampler has its own so its figure covers exactly its interval."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prev = psutil.cpu_times()

    def used_pct(self) -> float:
        now = psutil.cpu_times()
        with self._lock:
            prev, self._prev = self._prev, now
        return busy_pct(prev, now)


_count_lock = threading.Lock()
_taken_total = 0
_shared: CpuBaseline | None = None


def prime_cpu_sampler() -> None:
    # The first REST sample covers the time since start-up.
    global _shared
    if _shared is None:
        _shared = CpuBaseline()


def samples_taken() -> int:
    """How many samples this process has collected (makes sharing between watchers measurable)."""
    return _taken_total


def take_sample(baseline: CpuBaseline | None = None) -> Sample:
    global _taken_total
    if baseline is None:
        prime_cpu_sampler()
        baseline = _shared
    assert baseline is not None
    cpu_used_pct = baseline.used_pct()
    mem = psutil.virtual_memory()
    disk = os.statvfs("/")
    mem_used = mem.total - mem.available
    with _count_lock:
        _taken_total += 1
    return Sample(
        ts=int(time.time()),
        cpu_count=psutil.cpu_count(logical=True) or 1,
        cpu_used_pct=cpu_used_pct,
        mem_total_mib=mem.total // 1048576,
        mem_used_mib=mem_used // 1048576,
        mem_total=mem.total,
        mem_used=mem_used,
        # psutil's `cached` on Linux is Cached + SReclaimable, the spec's definition.
        mem_cache=mem.cached,
        disk_used=(disk.f_blocks - disk.f_bavail) * disk.f_frsize,
        disk_total=disk.f_blocks * disk.f_frsize,
    )


def collect() -> dict[str, int | float]:
    """GET /metrics body, on the shared baseline."""
    return take_sample().as_json()
