"""Per-request client-disconnect signal, so long streams stop promptly when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator
from typing import Any

from .http import Receive

# Set per request by the ASGI app (the RPC endpoint runs in the same task and sees it).
_disconnected: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("envd_disconnected", default=None)


def track_disconnect(receive: Receive) -> Receive:
    event = asyncio.Event()
    _disconnected.set(event)

    async def tracking_receive() -> dict[str, Any]:
        message = await receive()
        if message["type"] == "http.disconnect":
            event.set()
        return message

    return tracking_receive


def disconnected() -> asyncio.Event:
    """This request's disconnect event (a never-set one outside a tracked request)."""
    return _disconnected.get() or asyncio.Event()


@contextlib.asynccontextmanager
async def watch_disconnect(receive: Receive) -> AsyncIterator[asyncio.Event]:
    """For a REST handler that has read its body (or needs none): an event set when the client goes away."""
    event = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        event.set()

    task = asyncio.ensure_future(watch())
    try:
        yield event
    finally:
        task.cancel()
