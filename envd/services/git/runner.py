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
from .repository import config_of

T = TypeVar("T")
_DONE = object()


def preload_modules() -> None:
    """Import all of dulwich (0.3 s, ~5 MB), and our modules built on it, before any thread acts as a user.

    Imports inside a git thread would read the interpreter's files with the user's permissions, and the
    interpreter may live where the user cannot read (here: /root/.pyenv); dulwich imports lazily inside its
    functions. Pulling everything in once, as root, keeps those imports cache hits.
    """
    import importlib
    import pkgutil

    import dulwich

    skip = (".tests", ".contrib", ".cloud", ".aiohttp", ".cli", "__main__")
    names = [m.name for m in pkgutil.walk_packages(dulwich.__path__, "dulwich.") if not any(p in m.name for p in skip)]
    for name in [*names, *LAZY_STDLIB]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # a module for an optional extra (fastimport, ...) that the service never uses
    from . import packs  # noqa: F401  (imports dulwich at module level)


# Modules the stdlib/urllib3 import on first use inside a git operation (not at import time).
LAZY_STDLIB = ("encodings.idna", "urllib3.util.ssl_", "urllib3.contrib", "difflib", "email.message")


def _guarded(what: str, home: str, fn: Callable[..., T], *args: object) -> T:
    try:
        with config_of(home):
            return fn(*args)
    except Exception as err:
        raise translate(err, what) from None


class GitRunner:
    def __init__(self) -> None:
        self._threads = UserThreads(prepare=preload_modules)

    def close(self) -> None:
        self._threads.close()

    async def run(self, user: User, what: str, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(self._threads.submit(user, _guarded, what, user.home, fn, *args))

    async def stream(self, user: User, what: str, fn: Callable[..., T], *args: object) -> AsyncIterator[Progress | T]:
        """Yields Progress events while fn(*args, progress_sink) runs, then its result.

        If the consumer stops early (client gone, deadline), the operation is told to stop at its next
        progress report, and this waits for it to wind down (a clone removes what it wrote).
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        sink = ProgressLines(lambda p: loop.call_soon_threadsafe(queue.put_nowait, p), stop.is_set)
        future = asyncio.wrap_future(self._threads.submit(user, _guarded, what, user.home, fn, *args, sink))
        future.add_done_callback(lambda _f: queue.put_nowait(_DONE))
        try:
            while (item := await queue.get()) is not _DONE:
                yield item
            yield future.result()
        finally:
            if not future.done():
                stop.set()
                await asyncio.wait({future})
