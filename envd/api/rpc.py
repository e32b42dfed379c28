"""What every RPC adapter shares: user resolution, error mapping, disconnects, keepalives, deadlines.

Cores raise `envd.errors.EnvdError`; the interceptor here turns those into Connect errors, which
connectrpc then renders per protocol (Connect JSON/binary, gRPC trailers, gRPC-Web).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from ..auth.users import UnknownUser, User, lookup_user, parse_basic_username
from ..errors import EnvdError
from ..state import SandboxState
from .disconnect import disconnected

log = logging.getLogger("envd.rpc")

T = TypeVar("T")

DEFAULT_KEEPALIVE_S = 90.0  # spec/envd.md §4.6

def to_connect_error(err: EnvdError) -> ConnectError:
    return ConnectError(Code(err.code), err.message)


class EnvdInterceptor:
    """Metadata interceptor: rejects unknown Basic users before the body is read, maps core errors."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state

    async def on_start(self, ctx: RequestContext) -> None:
        username = parse_basic_username(ctx.request_headers.get("authorization"))
        if username is not None:
            try:
                lookup_user(username)
            except UnknownUser:
                raise ConnectError(Code.UNAUTHENTICATED, f"invalid username: '{username}'") from None

    async def on_end(self, _token: None, ctx: RequestContext, error: Exception | None) -> None:
        if isinstance(error, EnvdError):
            raise to_connect_error(error) from error
        if error is not None and not isinstance(error, ConnectError):
            log.error("rpc %s failed", ctx.method.name, exc_info=error)
            raise ConnectError(Code.INTERNAL, str(error)) from error


def request_user(ctx: RequestContext, state: SandboxState) -> User:
    """The request's user: Basic username, else the default user (spec/envd.md §2.5)."""
    username = parse_basic_username(ctx.request_headers.get("authorization"))
    if username is not None:
        try:
            return lookup_user(username)
        except UnknownUser:
            raise ConnectError(Code.UNAUTHENTICATED, f"invalid username: '{username}'") from None
    default = state.default_user
    if not default:
        raise ConnectError(Code.UNAUTHENTICATED, "no user specified")
    try:
        return lookup_user(default)
    except UnknownUser:
        raise ConnectError(Code.UNAUTHENTICATED, f"invalid default user: '{default}'") from None


def keepalive_interval(ctx: RequestContext) -> float:
    raw = ctx.request_headers.get("keepalive-ping-interval")
    try:
        seconds = int(raw) if raw is not None else 0
    except ValueError:
        seconds = 0
    # Q2: upstream crashes on <= 0; we fall back to the default.
    return float(seconds) if seconds > 0 else DEFAULT_KEEPALIVE_S


async def with_keepalives(
    events: AsyncIterator[T],
    ctx: RequestContext,
    keepalive: Callable[[], T],
) -> AsyncIterator[T]:
    """Relay `events`, inserting `keepalive()` after each idle period; end on deadline or disconnect.

    The deadline is the call's Connect-Timeout-Ms / grpc-timeout: the stream ends with
    deadline_exceeded when it passes (spec/envd.md §4.2).
    """
    interval = keepalive_interval(ctx)
    gone_event = disconnected()
    loop = asyncio.get_running_loop()
    remaining_ms = ctx.timeout_ms
    deadline = loop.time() + remaining_ms / 1000 if remaining_ms is not None else None
    iterator = events.__aiter__()
    next_event: asyncio.Task | None = None
    gone = asyncio.ensure_future(gone_event.wait())
    try:
        while True:
            if next_event is None:
                next_event = asyncio.ensure_future(iterator.__anext__())
            timeout = interval
            if deadline is not None:
                timeout = min(timeout, max(deadline - loop.time(), 0))
            done, _ = await asyncio.wait({next_event, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                raise ConnectError(Code.CANCELED, "client disconnected")
            if next_event in done:
                try:
                    item = next_event.result()
                except StopAsyncIteration:
                    return
                finally:
                    next_event = None
                yield item
                continue
            if deadline is not None and loop.time() >= deadline:
                raise ConnectError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
            yield keepalive()
    finally:
        gone.cancel()
        if next_event is not None:
            # Cancelling the pending __anext__ runs the source generator's cleanup; wait for it.
            next_event.cancel()
            await asyncio.wait({next_event})
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
