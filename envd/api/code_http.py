"""The code-interpreter HTTP API on port 49999 (code-interpreter.md §1), a thin adapter over CodeService.

Light to import: the service core (and jupyter_client) loads in the background, see CodePort.start. The core
is the one the native code.Interpreter service on 49983 also serves (envd/extension.py owns and closes it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import EnvdError, Internal, InvalidArgument, NotFound
from .http import Receive, Request, Scope, Send, send_response

log = logging.getLogger("envd.code")

PREFLIGHT_METHODS = b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"  # §1.1
_STATUS = {InvalidArgument: 400, NotFound: 404, Internal: 500}


def encode_line(event: dict[str, Any]) -> bytes:
    # §1.4: one ASCII-only JSON object per line (json.dumps escapes U+2028, \r, ... too).
    return (json.dumps(event) + "\n").encode("ascii")


async def _send_json(send: Send, status: int, payload: Any) -> None:
    # FastAPI JSONResponse: compact separators.
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send_response(send, status, body, [("content-type", "application/json")])


async def _send_plain(send: Send, status: int, text: str) -> None:
    await send_response(send, status, text.encode(), [("content-type", "text/plain; charset=utf-8")])


# -- request validation, FastAPI-shaped (§1.1) ---------------------------------------------------------


class ValidationFailed(Exception):
    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__("validation failed")
        self.details = details


def _parse_body(raw: bytes, allow_empty: bool) -> dict[str, Any]:
    if not raw.strip():
        if allow_empty:
            return {}
        raise ValidationFailed([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        body = json.loads(raw)
    except ValueError as err:
        pos = getattr(err, "pos", 0)
        raise ValidationFailed([{"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error",
                                 "input": {}, "ctx": {"error": getattr(err, "msg", str(err))}}]) from None
    if not isinstance(body, dict):
        raise ValidationFailed([{"type": "model_attributes_type", "loc": ["body"],
                                 "msg": "Input should be a valid dictionary or object to extract fields from",
                                 "input": body}])
    return body


def _optional_str(body: dict[str, Any], key: str, errors: list[dict[str, Any]]) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        errors.append({"type": "string_type", "loc": ["body", key], "msg": "Input should be a valid string",
                       "input": value})
        return None
    return value


def validate_execute(body: dict[str, Any]) -> tuple[str, str | None, str | None, dict[str, str] | None]:
    """§1.3: strict types (no coercion); unknown keys ignored."""
    errors: list[dict[str, Any]] = []
    if "code" not in body:
        errors.append({"type": "missing", "loc": ["body", "code"], "msg": "Field required", "input": body})
        code = ""
    else:
        code = body["code"]
        if not isinstance(code, str):
            errors.append({"type": "string_type", "loc": ["body", "code"], "msg": "Input should be a valid string",
                           "input": code})
    context_id = _optional_str(body, "context_id", errors)
    language = _optional_str(body, "language", errors)
    env_vars = body.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, dict):
            errors.append({"type": "dict_type", "loc": ["body", "env_vars"],
                           "msg": "Input should be a valid dictionary", "input": env_vars})
        else:
            for key, value in env_vars.items():
                if not isinstance(value, str):
                    errors.append({"type": "string_type", "loc": ["body", "env_vars", key],
                                   "msg": "Input should be a valid string", "input": value})
    if errors:
        raise ValidationFailed(errors)
    return code, context_id, language, env_vars


def validate_create(body: dict[str, Any]) -> tuple[str | None, str | None]:
    errors: list[dict[str, Any]] = []
    language = _optional_str(body, "language", errors)
    cwd = _optional_str(body, "cwd", errors)
    if errors:
        raise ValidationFailed(errors)
    return language, cwd


# -- the ASGI app --------------------------------------------------------------------------------------


class CodePort:
    """ASGI app for port 49999. `start` waits for the core (`load_service`) and starts the default context."""

    def __init__(self, load_service: Callable[[], Awaitable[Any]]) -> None:
        self._load_service = load_service
        self.service: Any = None
        self._loaded = asyncio.Event()
        self._load_error: str | None = None
        self._streams: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Background start (§4.4): wait for the core (loaded with envd's services), then the default python context."""
        try:
            self.service = await self._load_service()
        except Exception as err:
            log.critical("code service failed to load", exc_info=True)
            self._load_error = f"code service failed to load: {err}"
            self._loaded.set()
            return
        self._loaded.set()
        await self.service.start_defaults()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        origin = "origin" in request.headers
        if request.method == "OPTIONS" and origin and "access-control-request-method" in request.headers:
            await self._preflight(request, send)
            return
        if origin:
            send = _with_allow_origin(send)
        try:
            await self._route(request, send)
        except ValidationFailed as err:
            await _send_json(send, 422, {"detail": err.details})
        except EnvdError as err:
            await _send_plain(send, _STATUS.get(type(err), 500), err.message)

    async def _preflight(self, request: Request, send: Send) -> None:
        headers = [
            (b"vary", b"Origin"),
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", PREFLIGHT_METHODS),
            (b"access-control-max-age", b"600"),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"2"),
        ]
        if requested := request.headers.get("access-control-request-headers"):
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"OK"})

    async def _route(self, request: Request, send: Send) -> None:
        method, path = request.method, request.path
        parts = path.strip("/").split("/")
        if path == "/health":
            allowed = ("GET",)
        elif path == "/execute":
            allowed = ("POST",)
        elif path == "/contexts":
            allowed = ("GET", "POST")
        elif len(parts) == 2 and parts[0] == "contexts" and parts[1]:
            allowed = ("DELETE",)
        elif len(parts) == 3 and parts[0] == "contexts" and parts[1] and parts[2] == "restart":
            allowed = ("POST",)
        else:
            await _send_json(send, 404, {"detail": "Not Found"})
            return
        if method not in allowed:
            await _send_json(send, 405, {"detail": "Method Not Allowed"})
            return
        if path == "/health":
            await self._health(send)
            return
        body = await request.body()
        service = await self._service()
        if path == "/execute":
            await self._execute(request, send, service, body)
        elif path == "/contexts" and method == "GET":
            await _send_json(send, 200, service.list())
        elif path == "/contexts":
            language, cwd = validate_create(_parse_body(body, allow_empty=True))
            context = await service.create(language, cwd)
            await _send_json(send, 200, context.info())
        elif len(parts) == 2:
            await service.remove(parts[1])
            await _send_json(send, 200, None)
        else:
            await service.restart(parts[1])
            await _send_json(send, 200, None)

    async def _service(self) -> Any:
        await self._loaded.wait()
        if self._load_error:
            raise Internal(self._load_error)
        return self.service

    async def _health(self, send: Send) -> None:
        # §1.2/§4.4: healthy only once the default python context exists (never 502: SDKs read it as timeout).
        if self.service is not None and self.service.ready.is_set():
            await _send_json(send, 200, "OK")
        else:
            error = self._load_error or (self.service.start_error if self.service else None)
            await _send_plain(send, 503, error or "Starting")

    async def _execute(self, request: Request, send: Send, service: Any, body: bytes) -> None:
        code, context_id, language, env_vars = validate_execute(_parse_body(body, allow_empty=False))
        context = await service.resolve(context_id, language)
        # §1.4: 200 at once, no content type, chunked; everything after this is in-band.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        events = service.execute(context, code, env_vars)

        async def pump() -> None:
            try:
                async for event in events:
                    await send({"type": "http.response.body", "body": encode_line(event), "more_body": True})
            finally:
                await events.aclose()

        stream = asyncio.create_task(pump())
        gone = asyncio.create_task(_wait_disconnect(request.receive))
        try:
            await asyncio.wait({stream, gone}, return_when=asyncio.FIRST_COMPLETED)
            client_gone = gone.done()
        finally:
            gone.cancel()
            if not stream.done():
                # §1.4: the client left: stop the stream; closing it interrupts the kernel.
                stream.cancel()
            try:
                await stream
            except (asyncio.CancelledError, Exception):
                if not stream.cancelled():
                    log.warning("execute stream failed", exc_info=True)
        if client_gone:
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _with_allow_origin(send: Send) -> Send:
    async def cors_send(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"access-control-allow-origin", b"*")]}
        await send(message)

    return cors_send
