"""Minimal ASGI request/response helpers for the REST routes (no framework: a handful of routes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]


class Request:
    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            # First value wins, as Go's Header.Get does.
            self.headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        self.query: dict[str, str] = {}
        # parse_qsl decodes `+` as a space (form-style, §3.1.3); the first value of a repeated key wins.
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            self.query.setdefault(key, value)

    def header_items(self) -> Iterable[tuple[str, str]]:
        for key, value in self.scope.get("headers", ()):
            yield key.decode("latin-1"), value.decode("latin-1")

    async def body_chunks(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.body_chunks()])


class ClientDisconnected(Exception):
    pass


def _encode_headers(headers: Iterable[tuple[str, str]]) -> RawHeaders:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_response(
    send: Send, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
) -> None:
    raw = _encode_headers(headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
    body = (json.dumps(payload, separators=(",", ":")) + "\n").encode()
    await send_response(send, status, body, [("content-type", "application/json"), *headers])


async def send_error(send: Send, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    """The REST JSON error body of spec/envd.md §3.1.1: code then message, newline-terminated."""
    body = (json.dumps({"code": status, "message": message}, separators=(",", ":")) + "\n").encode()
    await send_response(
        send,
        status,
        body,
        [("content-type", "application/json; charset=utf-8"), ("x-content-type-options", "nosniff"), *headers],
    )


async def send_text(send: Send, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    await send_response(send, status, text.encode(), [("content-type", "text/plain; charset=utf-8"), *headers])


class HTTPError(Exception):
    """Raised by REST handlers; answered with the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
