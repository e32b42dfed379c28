"""The ASGI application on port 49983: CORS -> token gate -> Basic user -> REST routes | RPC services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from ..auth.gate import gate_rejection
from ..auth.users import UnknownUser, lookup_user, parse_basic_username
from ..state import SandboxState
from . import cors
from .http import HTTPError, Receive, Request, Scope, Send, send_error, send_json, send_response
from .disconnect import track_disconnect

log = logging.getLogger("envd")

Handler = Callable[[Request, Send], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


@dataclass
class Extension:
    """Routes and services that are loaded after the daemon already answers /health."""

    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    # ASGI apps of the RPC services, keyed by their mount path (`/filesystem.Filesystem`).
    services: dict[str, Callable] = field(default_factory=dict)
    on_shutdown: list[Hook] = field(default_factory=list)
    # The code-interpreter core, served here (code.Interpreter) and on the code port (server.with_code_port).
    code: object | None = None


@dataclass
class EnvdApp:
    state: SandboxState
    routes: dict[tuple[str, str], Handler]
    services: dict[str, Callable] = field(default_factory=dict)
    on_shutdown: list[Hook] = field(default_factory=list)
    # Builds the heavy part (RPC stack, file transfer) once serving has started, so start-up stays fast.
    load_extension: Callable[[], Awaitable[Extension]] | None = None

    def __post_init__(self) -> None:
        self._route_paths = {path for _method, path in self.routes}
        self._loaded = asyncio.Event()
        self._load_error: str | None = None
        self.code: object | None = None  # Extension.code, once loaded
        if self.load_extension is None:
            self._loaded.set()

    async def _load(self) -> None:
        assert self.load_extension is not None
        try:
            extension = await self.load_extension()
        except Exception as err:
            log.critical("failed to load services", exc_info=True)
            self._load_error = f"envd failed to load its services: {err}"
        else:
            self.routes.update(extension.routes)
            self._route_paths.update(path for _method, path in extension.routes)
            self.services.update(extension.services)
            self.on_shutdown.extend(extension.on_shutdown)
            self.code = extension.code
        self._loaded.set()

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    @property
    def load_error(self) -> str | None:
        return self._load_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        if cors.is_preflight(request):
            await cors.answer_preflight(request, send)
            return
        send = cors.with_cors_headers(request, send)

        if message := gate_rejection(request.method, request.path, request.headers.get("x-access-token"), self.state):
            await send_error(send, 401, message)
            return
        if not self._loaded.is_set() and (request.method, request.path) not in self.routes:
            await self._loaded.wait()
        if self._load_error and (request.method, request.path) not in self.routes:
            await send_error(send, 500, self._load_error)
            return

        service = self._service_for(request.path)
        if service is not None:
            # The Basic-auth user is checked by the RPC interceptor, so each protocol gets its own error shape.
            receive = track_disconnect(receive)
            await service(scope, receive, send)
            return

        username = parse_basic_username(request.headers.get("authorization"))
        if username is not None:
            try:
                lookup_user(username)
            except UnknownUser:
                # Q11: upstream answers REST routes with the Connect-style body.
                await send_json(send, 401, {"code": "unauthenticated", "message": f"invalid username: '{username}'"})
                return
        await self._route(request, send)

    def _service_for(self, path: str) -> Callable | None:
        prefix, sep, _method = path.rpartition("/")
        return self.services.get(prefix) if sep else None

    async def _route(self, request: Request, send: Send) -> None:
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            if request.path in self._route_paths:
                await send_response(send, 405)
            else:
                await send_response(send, 404, b"404 page not found\n", [("content-type", "text/plain; charset=utf-8")])
            return
        try:
            await handler(request, send)
        except HTTPError as err:
            await send_error(send, err.status, err.message)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.load_extension is not None:
                    self._load_task = asyncio.create_task(self._load())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._loaded.wait()
                for hook in self.on_shutdown:
                    try:
                        await hook()
                    except Exception:
                        log.exception("shutdown hook failed")
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_routes(*route_groups: Iterable[tuple[str, str, Handler]]) -> dict[tuple[str, str], Handler]:
    return {(method, path): handler for group in route_groups for method, path, handler in group}
