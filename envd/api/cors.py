"""CORS as upstream (spec/envd.md §3.1.4): any origin, preflights answered before auth."""

from __future__ import annotations

from .http import Request, Send

ALLOWED_METHODS = "HEAD, GET, POST, PUT, PATCH, DELETE"
EXPOSED_HEADERS = "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Location, Cache-Control, X-Content-Type-Options"


def is_preflight(request: Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "origin" in request.headers
        and "access-control-request-method" in request.headers
    )


async def answer_preflight(request: Request, send: Send) -> None:
    headers = [
        (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", request.headers["access-control-request-method"].upper().encode()),
        (b"access-control-max-age", b"7200"),
    ]
    if requested := request.headers.get("access-control-request-headers"):
        headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def with_cors_headers(request: Request, send: Send) -> Send:
    """Wrap `send` so actual (non-preflight) responses carry the CORS headers."""
    has_origin = "origin" in request.headers

    async def cors_send(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((b"vary", b"Origin"))
            if has_origin:
                headers.append((b"access-control-allow-origin", b"*"))
                headers.append((b"access-control-expose-headers", EXPOSED_HEADERS.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return cors_send
