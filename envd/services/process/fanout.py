"""One process's output, fanned out to every current subscriber (spec/envd.md §6.5).

- One reader per output fd, driven by the event loop (`add_reader` on a non-blocking fd; no thread or task
  per process). Every non-empty read (32 KiB on pipes, 16 KiB on a PTY) is one `Chunk`, never split or merged.
- A chunk goes to every subscriber current at that moment; a late joiner sees only what follows (no replay).
- Nobody subscribed: the chunk is dropped, so a child never blocks for lack of a listener.
- Subscribed: lossless and back-pressured. Each subscriber has a queue of `QUEUE_EVENTS`; when a push fills
  one, reading stops (`remove_reader`) until that subscriber has drained to half, so a slow subscriber slows
  the reader and, through the full pipe, the child — and memory stays bounded whatever the client's speed.
  A subscriber that leaves is dropped at once and unblocks the reader.
- The end marker is queued after the last chunk, beyond the bound (it is one small object).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

log = logging.getLogger("envd.process")

PIPE_READ_SIZE = 32 * 1024
PTY_READ_SIZE = 16 * 1024
QUEUE_EVENTS = 64
RESUME_AT = QUEUE_EVENTS // 2

End = TypeVar("End")


class Chunk(NamedTuple):
    stream: str  # "stdout", "stderr" or "pty"
    data: bytes


class Source(NamedTuple):
    fd: int
    stream: str
    read_size: int


class Closed(Exception):
    """The fan-out was shut down without an end (daemon stopping)."""


class Subscriber(Generic[End]):
    """One listener's view: its own bounded queue of chunks, then the end."""

    __slots__ = ("_fanout", "_queue", "_waiter", "_error", "_blocking")

    def __init__(self, fanout: Fanout[End]) -> None:
        self._fanout = fanout
        self._queue: deque[Chunk | End] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._blocking = False  # this queue is what paused the reader

    def __len__(self) -> int:
        return len(self._queue)

    def _push(self, item: Chunk | End) -> None:
        self._queue.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Chunk | End | None:
        if self._queue:
            item = self._queue.popleft()
            if self._blocking and len(self._queue) <= RESUME_AT:
                self._fanout._drained(self)
            return item
        if self._error is not None:
            raise self._error
        return None

    async def get(self, timeout: float | None = None) -> Chunk | End | None:
        """The next chunk or the end; None when `timeout` seconds pass first."""
        item = self.get_nowait()
        if item is not None:
            return item
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return self.get_nowait()

    def interrupt(self, error: BaseException) -> None:
        """Leave at once; the pending and every later `get` raise `error` (e.g. the client went away)."""
        self.close()
        self._fail(error)

    def close(self) -> None:
        """Leave: never blocks the reader again."""
        self._fanout._unsubscribe(self)
        self._queue.clear()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Fanout(Generic[End]):
    def __init__(self, sources: list[Source], on_eof: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._open = {source.fd: source for source in sources}  # not yet at EOF
        self._on_eof = on_eof
        self._subscribers: list[Subscriber[End]] = []
        self._full: set[Subscriber[End]] = set()
        self._reading = False
        self._finished = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def at_eof(self) -> bool:
        return not self._open

    def subscribe(self) -> Subscriber[End]:
        if self._finished:
            raise RuntimeError("fan-out already finished")
        subscriber: Subscriber[End] = Subscriber(self)
        self._subscribers.append(subscriber)
        return subscriber

    def start(self) -> None:
        """Begin reading (after the first subscriber is in place, §6.5)."""
        if not self._open:
            self._on_eof()
            return
        self._resume()

    def finish(self, end: End) -> None:
        """Stop reading and give every subscriber `end` after what it has queued."""
        self._pause()
        self._finished = True
        self._open.clear()
        for subscriber in self._subscribers:
            subscriber._push(end)
        self._subscribers = []
        self._full.clear()

    def shutdown(self, error: BaseException) -> None:
        """Stop reading; subscribers get `error` once they have drained their queue."""
        self._pause()
        self._finished = True
        self._open.clear()
        for subscriber in self._subscribers:
            subscriber._fail(error)
        self._subscribers = []
        self._full.clear()

    # -- reading --------------------------------------------------------------------------------------

    def _resume(self) -> None:
        if self._reading or self._finished or self._full:
            return
        self._reading = True
        for source in self._open.values():
            self._loop.add_reader(source.fd, self._read, source)

    def _pause(self) -> None:
        if not self._reading:
            return
        self._reading = False
        for fd in self._open:
            self._loop.remove_reader(fd)

    def _read(self, source: Source) -> None:
        try:
            data = os.read(source.fd, source.read_size)
        except BlockingIOError:
            return
        except OSError as err:
            # A PTY master reads EIO once every slave fd is closed: that is its EOF (§6.5).
            if err.errno != errno.EIO:
                log.warning("reading %s failed: %s", source.stream, err)
            data = b""
        if not data:
            self._loop.remove_reader(source.fd)
            del self._open[source.fd]
            if not self._open:
                self._reading = False
                self._on_eof()
            return
        subscribers = self._subscribers
        if not subscribers:
            return  # §6.5: nobody listening, the output is dropped
        chunk = Chunk(source.stream, data)
        for subscriber in subscribers:
            subscriber._push(chunk)
            if len(subscriber._queue) >= QUEUE_EVENTS:
                subscriber._blocking = True
                self._full.add(subscriber)
        if self._full:
            self._pause()

    def _drained(self, subscriber: Subscriber[End]) -> None:
        subscriber._blocking = False
        self._full.discard(subscriber)
        if not self._full:
            self._resume()

    def _unsubscribe(self, subscriber: Subscriber[End]) -> None:
        try:
            self._subscribers.remove(subscriber)
        except ValueError:
            return
        if subscriber in self._full:
            self._drained(subscriber)
