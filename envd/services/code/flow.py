"""Bounded buffering of a kernel's output for slow readers: stop the kernel, never drop its messages.

IOPub has to be read as fast as it comes (a kernel's PUB socket silently drops messages at its high-water
mark), so a client reading slower than a cell prints would make envd buffer without limit. Instead, once the
events waiting for readers pass HIGH bytes the kernel's process group gets SIGSTOP, and SIGCONT once readers
have brought it back under LOW: the cell pauses exactly like a program writing to a full pipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HIGH_BYTES = 4 * 2**20
LOW_BYTES = 2**20
EVENT_OVERHEAD = 256  # a queued event's dict and header strings, beyond its text


def event_size(event: dict[str, Any]) -> int:
    return EVENT_OVERHEAD + sum(len(value) for value in event.values() if isinstance(value, str))


class OutputBudget:
    """Counts buffered event bytes of one kernel; calls pause/resume when they cross the watermarks."""

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None],
                 high: int = HIGH_BYTES, low: int = LOW_BYTES) -> None:
        self._pause = pause
        self._resume = resume
        self.high = high
        self.low = low
        self.buffered = 0
        self.paused = False
        self.pauses = 0  # how often the kernel was stopped (tests, logs)

    def add(self, size: int) -> None:
        self.buffered += size
        if not self.paused and self.buffered > self.high:
            self.paused = True
            self.pauses += 1
            self._pause()

    def release(self, size: int) -> None:
        self.buffered -= size
        if self.paused and self.buffered <= self.low:
            self.resume()

    def resume(self) -> None:
        """Let the kernel run now (interrupt, restart); the next add over HIGH stops it again."""
        if self.paused:
            self.paused = False
            self._resume()
