"""Waiting for a lock only as long as the caller is still there (spec/envd.md §3.9, §3.11: 503 when it left)."""

from __future__ import annotations

import asyncio

from ..errors import Canceled


async def acquire_unless(lock: asyncio.Lock, cancelled: asyncio.Event | None, what: str) -> None:
    """Acquire `lock`, or raise Canceled if `cancelled` is set first (None: wait for as long as it takes)."""
    if cancelled is None:
        await lock.acquire()
        return
    acquire = asyncio.ensure_future(lock.acquire())
    gone = asyncio.ensure_future(cancelled.wait())
    await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if acquire.done():
        return  # had it, even if the caller left in the same instant: the work is short and never half done
    acquire.cancel()
    raise Canceled(f"{what} not acquired before the caller gave up")
