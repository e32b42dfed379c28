"""Ship the daemon's JSON log lines to the collector named by MMDS (spec/envd.md §8.2).

A logging handler queues each formatted line (bounded: 8 MiB in total, oldest dropped first; lines over
192 KiB dropped) and returns at once, so logging never waits on the network. One sender thread, started
when MMDS gives an address, POSTs each line on its own (instanceID and envID added) with a 10 s timeout
and no keep-alive; a failed line is dropped, and failures are reported on stderr at most once a minute
(straight to stderr: reporting through logging would feed the exporter its own errors).
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import sys
import threading
import time
from collections.abc import Callable

from ..logs import JSONFormatter
from . import plain_http
from .mmds import Metadata

MAX_LINE_BYTES = 192 * 1024
MAX_QUEUED_BYTES = 8 * 1024 * 1024
POST_TIMEOUT_S = 10.0
ERROR_EVERY_S = 60.0


class LineQueue:
    """Thread-safe FIFO bounded by total bytes."""

    def __init__(self, max_bytes: int = MAX_QUEUED_BYTES, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.max_line = max_line
        self._lines: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, line: bytes) -> bool:
        with self._ready:
            if len(line) > self.max_line:
                self.dropped += 1
                return False
            self._lines.append(line)
            self._bytes += len(line)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._lines.popleft())
                self.dropped += 1
            self._ready.notify()
        return True

    def get(self, timeout: float | None = None) -> bytes | None:
        with self._ready:
            if not self._lines:
                self._ready.wait(timeout)
            if not self._lines:
                return None
            line = self._lines.popleft()
            self._bytes -= len(line)
            return line

    def clear(self) -> None:
        with self._ready:
            self._lines.clear()
            self._bytes = 0

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._lines)


class RateLimitedReporter:
    """At most one line per `every_s`; the next one says how many were suppressed in between."""

    def __init__(self, every_s: float = ERROR_EVERY_S, write: Callable[[str], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._write = write or (lambda text: print(text, file=sys.stderr, flush=True))
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def report(self, message: str) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            self._suppressed += 1
            return False
        self._last = now
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        self._suppressed = 0
        self._write(f"envd: {message}{more}")
        return True


def post_line(address: str, body: bytes) -> None:
    response = plain_http.request(address, "POST", headers={"Content-Type": "application/json"},
                                  body=body, timeout=POST_TIMEOUT_S)
    if not response.ok:
        raise OSError(f"collector answered {response.status}")


class LogExporter(logging.Handler):
    """FC mode's second log sink. Lines queue from start-up; sending starts once MMDS names a collector."""

    def __init__(self, queue: LineQueue | None = None, reporter: RateLimitedReporter | None = None,
                 post: Callable[[str, bytes], None] = post_line) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JSONFormatter())
        self.queue = queue or LineQueue()
        self.reporter = reporter or RateLimitedReporter()
        self._post = post
        self._target: tuple[str, dict[str, str]] | None = None  # (address, fields added to each line)
        self._collecting = True
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if not self._collecting:
            return
        try:
            line = self.format(record).encode()
        except Exception:
            self.handleError(record)
            return
        self.queue.put(line)

    def configure(self, metadata: Metadata) -> None:
        """MMDS metadata arrived (again): the collector address and the fields for every line."""
        if not metadata.address:
            # No collector for this sandbox: stop holding up to 8 MiB of lines nobody will read.
            self._collecting = False
            self._target = None
            self.queue.clear()
            return
        self._target = (metadata.address, {"instanceID": metadata.instance_id, "envID": metadata.env_id})
        self._collecting = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="envd-log-export", daemon=True)
            self._thread.start()
        self.queue.wake()

    def _run(self) -> None:
        while not self._stopped:
            target = self._target
            if target is None:
                time.sleep(0.1)
                continue
            line = self.queue.get(timeout=1.0)
            if line is None:
                continue
            address, fields = target
            try:
                entry = json.loads(line)
                entry.update(fields)
                self._post(address, json.dumps(entry).encode())
                self.sent += 1
            except (OSError, ValueError, http.client.HTTPException) as err:
                self.failed += 1
                self.reporter.report(f"log export to {address} failed, line dropped: {err}")

    def close(self, drain_s: float = 1.0) -> None:
        """At exit (logging.shutdown): a bounded chance to ship the last lines ("envd stopped"), then stop."""
        if self._thread is not None and self._target is not None:
            deadline = time.monotonic() + drain_s
            while len(self.queue) and time.monotonic() < deadline:
                time.sleep(0.02)
        self._stopped = True
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(timeout=0.2)  # a POST to a hanging collector is left to its daemon thread
        super().close()
