"""The routing proxy: one local URL (E2B_SANDBOX_URL) in front of every sandbox's ports.

Which sandbox and port a request is for (sdk-expectations.md §1.4):
  1. the SDK's `E2b-Sandbox-Id` / `E2b-Sandbox-Port` headers (every SDK request to envd carries them);
  2. a Host of the form `<port>-<sandbox id>.<anything>` (what `get_host(port)` returns with our domain);
  3. a signed /files URL opened by any HTTP client (no headers): the sandbox whose access token produced the
     signature (v1 signatures are SHA-256 over path, operation, user and token, §3.4). envd in the VM still
     checks the signature and its expiry; this only picks the VM.
Unknown or stopped sandbox -> 502 {"message": "The sandbox was not found"}, and a port nobody listens on ->
502 "port is not open": the edge proxy's answers, which the SDKs read as "sandbox not running" (§1.8).
Bodies stream both ways unchanged (no decompression); a client leaving closes the connection to the VM, so
envd sees the disconnect.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from urllib.parse import parse_qsl

import httpx

from ..auth.signatures import sign
from .qemu import ENVD_PORT, VMError
from .sandboxes import Manager, Sandbox

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host"}
HOST_ROUTE = re.compile(r"^(\d+)-([a-z0-9]+)\.")


class Proxy:
    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        # No timeouts on reads: command output streams last as long as the command.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(connect=10.0, read=None, write=None, pool=None),
                                      limits=httpx.Limits(max_connections=None, max_keepalive_connections=200))

    async def close(self) -> None:
        await self.http.aclose()

    def route(self, scope) -> tuple[str | None, int]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if sandbox_id := headers.get("e2b-sandbox-id"):
            try:
                return sandbox_id, int(headers.get("e2b-sandbox-port", ENVD_PORT))
            except ValueError:
                return sandbox_id, -1
        if match := HOST_ROUTE.match(headers.get("host", "")):
            return match.group(2), int(match.group(1))
        return self.by_signature(scope), ENVD_PORT

    def by_signature(self, scope) -> str | None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        sig = query.get("signature")
        if not sig or scope["path"] != "/files":
            return None
        operation = "read" if scope["method"] == "GET" else "write"
        try:
            expiration = int(query["signature_expiration"]) if query.get("signature_expiration") else None
        except ValueError:
            return None
        for sandbox in list(self.manager.sandboxes.values()):
            if sandbox.access_token:
                expected = sign(query.get("path", ""), operation, query.get("username", ""), sandbox.access_token,
                                expiration)
                if hmac.compare_digest(expected.encode(), sig.encode()):
                    return sandbox.id
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        sandbox_id, port = self.route(scope)
        sandbox = self.manager.running(sandbox_id) if sandbox_id else None
        if sandbox is None:
            await self.gone(send, sandbox_id or "", "The sandbox was not found")
            return
        if not 0 < port < 65536:
            await self.gone(send, sandbox.id, "The sandbox is running but port is not open", port)
            return
        try:
            host_port = await sandbox.vm.forward(port)
        except (VMError, AttributeError):
            await self.gone(send, sandbox.id, "The sandbox was not found")
            return
        await self.forward(scope, receive, send, sandbox, port, host_port)

    async def forward(self, scope, receive, send, sandbox: Sandbox, port: int, host_port: int) -> None:
        headers = [(k, v) for k, v in scope.get("headers", ()) if k.decode("latin-1").lower() not in HOP_BY_HOP]
        has_body = any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in scope.get("headers", ()))
        body_done = asyncio.Event()
        disconnected = asyncio.Event()

        async def body():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    raise httpx.StreamClosed()
                if chunk := message.get("body", b""):
                    yield chunk
                if not message.get("more_body", False):
                    body_done.set()
                    return

        if not has_body:
            body_done.set()
        # The request target exactly as the client sent it (no re-encoding of the path or the query).
        target = scope.get("raw_path") or scope["path"].encode()
        if query := scope.get("query_string", b""):
            target += b"?" + query
        url = httpx.URL(scheme="http", host="127.0.0.1", port=host_port, raw_path=target)
        request = self.http.build_request(scope["method"], url, headers=headers,
                                          content=body() if has_body else None)
        # httpx adds its own defaults; the VM must see the client's headers only (an added Accept-Encoding
        # would get a client that asked for none a gzipped /files answer).
        sent = {k.lower() for k, _ in headers}
        for name in ("accept", "accept-encoding", "user-agent"):
            if name.encode() not in sent:
                request.headers.pop(name, None)
        try:
            response = await self.http.send(request, stream=True)
        except (httpx.TransportError, httpx.StreamClosed):
            if not disconnected.is_set():
                await self.gone(send, sandbox.id, "The sandbox is running but port is not open", port)
            return

        async def watch_disconnect():
            await body_done.wait()
            while (await receive())["type"] != "http.disconnect":
                pass

        async def pump():
            out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.multi_items()
                   if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(watch_disconnect())
        try:
            await asyncio.wait({pumping, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watching):
                task.cancel()
            await asyncio.gather(pumping, watching, return_exceptions=True)
            await response.aclose()  # the client left or the answer ended: release (or drop) the VM connection

    @staticmethod
    async def gone(send, sandbox_id: str, message: str, port: int | None = None) -> None:
        payload = {"sandboxId": sandbox_id, "message": message, **({"port": port} if port else {}), "code": 502}
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": 502,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
