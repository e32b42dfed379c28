"""Running core operations off the event loop, as the request user, with progress relayed as events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from ...auth.users import User
from .as_user import UserThreads
from .failures import translate
from .progress import Progress, ProgressLines

T = TypeVar("T")
_DONE = object()


def _guarded(what: str, fn: Callable[..., T], *args: object) -> T:
    try:
        return fn(*args)
    except Exception as err:
        raise translate(err, what) from None


class GitRunner:
    def __init__(self) -> None:
        self._threads = UserThreads()

    def close(self) -> None:
        self._threads.close()

    async def run(self, user: User, what: str, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(self._threads.submit(user, _guarded, what, fn, *args))

    async def stream(self, user: User, what: str, fn: Callable[..., T], *args: object) -> AsyncIterator[Progress | T]:
        """Yields Progress events while fn(*args, progress_sink) runs, then its result.

        If the consumer stops early (client gone, deadline), the operation is told to stop at its next
        progress report, and this waits for it to wind down (a clone removes what it wrote).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        sink = ProgressLines(lambda p: loop.call_soon_threadsafe(queue.put_nowait, p), stop.is_set)
        future = asyncio.wrap_future(self._threads.submit(user, _guarded, what, fn, *args, sink))
        future.add_done_callback(lambda _f: queue.put_nowait(_DONE))
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
            yield future.result()
        finally:
            if not future.done():
                stop.set()
                await asyncio.wait({future})
