"""Clock sync from /init (spec/envd.md §3.4.3), behind a tiny interface chosen once at start-up."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("envd")

BEHIND_NS = 50_000_000  # pull forward when more than 50 ms behind
AHEAD_NS = 5_000_000_000  # pull back only when more than 5 s ahead


def needs_sync(now_ns: int, host_ns: int) -> bool:
    return now_ns < host_ns - BEHIND_NS or now_ns > host_ns + AHEAD_NS


class SystemClock:
    """Sets CLOCK_REALTIME (inside the VM, where envd owns the clock)."""

    def sync(self, host_ns: int) -> None:
        if not needs_sync(time.time_ns(), host_ns):
            return
        try:
            time.clock_settime_ns(time.CLOCK_REALTIME, host_ns)
        except OSError as err:
            log.warning("failed to set clock: %s", err)


class NoClock:
    """Local mode: never touch the host machine's clock."""

    def sync(self, host_ns: int) -> None:
        if needs_sync(time.time_ns(), host_ns):
            log.info("clock differs from /init timestamp; not set in local mode")
