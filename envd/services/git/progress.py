"""Progress of clone/fetch/push: the remote's sideband lines, parsed into plain events.

git servers send lines like `Receiving objects:  42% (21/50)` ending in `\r` while they update and `\n` when a
stage is done; dulwich hands them to us in arbitrary chunks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_COUNTED = re.compile(r"^(?:remote: )?(?P<stage>[^:]+):\s+(?:(?P<pct>\d+)%\s+)?\((?P<cur>\d+)/(?P<tot>\d+)\)")
_PLAIN = re.compile(r"^(?:remote: )?(?P<stage>[^:]+):\s+(?P<cur>\d+)(?:,|$)")


@dataclass(frozen=True)
class Progress:
    message: str
    stage: str = ""
    current: int = 0
    total: int = 0


def parse_line(line: str) -> Progress:
    if m := _COUNTED.match(line):
        return Progress(line, m["stage"].strip(), int(m["cur"]), int(m["tot"]))
    if m := _PLAIN.match(line):
        return Progress(line, m["stage"].strip(), int(m["cur"]), 0)
    return Progress(line)


class ProgressLines:
    """A write()-able sink (dulwich's errstream / progress callback) cutting chunks into Progress events.

    Only the latest update of a stage matters: a stage's updates are passed on at most every INTERVAL_S
    (dulwich reports every object while indexing a pack: thousands of lines), its first and last always.
    `cancelled()` is polled on every write: raising from dulwich's progress hook is how a fetch is abandoned
    when the client went away.
    """

    def __init__(self, on_progress: Callable[[Progress], None], cancelled: Callable[[], bool]) -> None:
        self._emit = on_progress
        self._cancelled = cancelled
        self._partial = ""
        self._stage = None
        self._last = 0.0

    INTERVAL_S = 0.1

    def _offer(self, line: str) -> None:
        event = parse_line(line)
        now = time.monotonic()
        final = event.total and event.current >= event.total or line.endswith("done.")
        if event.stage != self._stage or final or now - self._last >= self.INTERVAL_S:
            self._stage, self._last = event.stage, now
            self._emit(event)

    def write(self, data: bytes) -> int:
        if self._cancelled():
            raise InterruptedError("the client went away")
        text = self._partial + data.decode("utf-8", "replace")
        *lines, self._partial = re.split(r"[\r\n]", text)
        for line in lines:
            if line.strip():
                self._offer(line.strip())
        return len(data)

    def __call__(self, data: bytes) -> None:
        self.write(data)

    def flush(self) -> None:
        if self._partial.strip():
            self._offer(self._partial.strip())
        self._partial = ""
