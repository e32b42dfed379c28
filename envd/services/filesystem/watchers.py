"""Polling watchers: CreateWatcher / GetWatcherEvents / RemoveWatcher (spec/envd.md §7.8).

A watcher outlives the request that made it and buffers its events (unbounded) until polled. The
sync Python SDK polls right after a write and expects that write's events, so a poll first drains
whatever the kernel has queued.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string

from ...errors import EnvdError, Internal, NotFound
from .watch import AsyncDirWatch, WatchEvent

log = logging.getLogger("envd.filesystem")

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_watcher_id() -> str:
    return "w" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


class PollingWatcher:
    def __init__(self, watch: AsyncDirWatch) -> None:
        self._watch = watch
        self._buffer: list[WatchEvent] = []
        self._error: EnvdError | None = None
        self._lock = asyncio.Lock()  # one drain at a time, so events land in kernel order
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._error is None:
            await self._watch.wait_readable()
            await self._drain()

    async def _drain(self) -> None:
        async with self._lock:
            if self._error is not None:
                return
            try:
                self._buffer.extend(await self._watch.read())
            except EnvdError as err:
                self._error = err
                self._buffer.clear()
            except Exception as err:  # noqa: BLE001 - a broken watcher reports, the daemon goes on
                log.exception("watcher failed")
                self._error = Internal(f"watcher error: {err}")
                self._buffer.clear()

    async def take(self) -> list[WatchEvent]:
        """Every event since the last call, in arrival order; the watcher's error once it failed."""
        await self._drain()
        if self._error is not None:
            raise type(self._error)(self._error.message)
        events, self._buffer = self._buffer, []
        return events

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._watch.close()


class Watchers:
    """The live polling watchers by id; never garbage-collected, removed only on request or shutdown."""

    def __init__(self) -> None:
        self._watchers: dict[str, PollingWatcher] = {}

    async def create(self, path: str, *, recursive: bool, include_entry: bool, allow_network_mounts: bool) -> str:
        watch = await AsyncDirWatch.open(
            path, recursive=recursive, include_entry=include_entry, allow_network_mounts=allow_network_mounts
        )
        watcher_id = new_watcher_id()
        self._watchers[watcher_id] = PollingWatcher(watch)
        return watcher_id

    def _get(self, watcher_id: str) -> PollingWatcher:
        watcher = self._watchers.get(watcher_id)
        if watcher is None:
            raise NotFound(f"watcher with id {watcher_id} not found")
        return watcher

    async def events(self, watcher_id: str) -> list[WatchEvent]:
        return await self._get(watcher_id).take()

    async def remove(self, watcher_id: str) -> None:
        watcher = self._get(watcher_id)
        del self._watchers[watcher_id]
        await watcher.close()

    def __len__(self) -> int:
        return len(self._watchers)

    async def close(self) -> None:
        watchers, self._watchers = list(self._watchers.values()), {}
        for watcher in watchers:
            await watcher.close()
