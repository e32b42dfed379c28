"""The E2B control-plane API the SDKs use for a sandbox's lifecycle (sdk-expectations.md §2.3), over Manager.

JSON in and out; errors are {"code": <int>, "message": "..."}. Every route but GET /health needs an
X-API-KEY that is one of the configured keys.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from ..api.http import Request, Send, send_json, send_response
from .sandboxes import Manager, PlatformError, Sandbox

CLIENT_ID = "envd-platform"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _string_map(body: dict, key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PlatformError(400, f"{key} must be an object of string values")
    return value


class Api:
    def __init__(self, manager: Manager, api_keys: list[str], domain: str | None) -> None:
        self.manager = manager
        self.api_keys = [key.encode() for key in api_keys]
        self.domain = domain
        sid = r"(?P<id>[^/]+)"
        routes: list[tuple[str, str, Callable[..., Awaitable[None]]]] = [
            ("POST", r"/v2/sandboxes", self.create),
            ("POST", r"/sandboxes", self.create),
            ("GET", r"/v2/sandboxes", self.list_v2),
            ("GET", r"/sandboxes", self.list_v1),
            ("GET", rf"/sandboxes/{sid}", self.info),
            ("DELETE", rf"/sandboxes/{sid}", self.kill),
            ("POST", rf"/sandboxes/{sid}/timeout", self.timeout),
            ("POST", rf"/sandboxes/{sid}/pause", self.pause),
            ("POST", rf"/v2/sandboxes/{sid}/connect", self.connect),
            ("POST", rf"/sandboxes/{sid}/connect", self.connect),
            ("POST", rf"/sandboxes/{sid}/resume", self.connect),
            ("GET", rf"/sandboxes/{sid}/metrics", self.metrics),
        ]
        self.routes = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in routes]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            if request.method == "GET" and request.path == "/health":
                await self.health(request, send)
                return
            self.authorize(request)
            for method, pattern, handler in self.routes:
                if match := pattern.match(request.path):
                    if request.method != method:
                        continue
                    await handler(request, send, **match.groupdict())
                    return
            raise PlatformError(404, f"no route {request.method} {request.path}")
        except PlatformError as err:
            # Should-Retry: false stops the Python SDK retrying 429/503 answers that will not change by waiting.
            await send_json(send, err.status, {"code": err.status, "message": err.message},
                            [("should-retry", "false")])

    def authorize(self, request: Request) -> None:
        key = request.headers.get("x-api-key", "").encode()
        if not key or not any(hmac.compare_digest(key, valid) for valid in self.api_keys):
            raise PlatformError(401, "Invalid API key" if key else "missing X-API-KEY header")

    async def body(self, request: Request) -> dict:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as err:
            raise PlatformError(400, f"request body is not JSON: {err}") from None
        if not isinstance(body, dict):
            raise PlatformError(400, "request body must be a JSON object")
        return body

    # --- shapes (sdk-expectations.md §2.3 "Object shapes") ---

    def sandbox_json(self, sandbox: Sandbox) -> dict:
        return {"sandboxID": sandbox.id, "templateID": sandbox.template.name, "clientID": CLIENT_ID,
                "alias": sandbox.template.name, "envdVersion": sandbox.template.envd_version,
                "envdAccessToken": sandbox.access_token, "trafficAccessToken": None, "domain": self.domain}

    def detail_json(self, sandbox: Sandbox) -> dict:
        return {"sandboxID": sandbox.id, "templateID": sandbox.template.name, "clientID": CLIENT_ID,
                "alias": sandbox.template.name, "startedAt": rfc3339(sandbox.started_at),
                "endAt": rfc3339(sandbox.end_at), "envdVersion": sandbox.template.envd_version,
                "cpuCount": sandbox.template.cpus, "memoryMB": sandbox.template.memory_mib,
                "diskSizeMB": disk_size_mb(sandbox), "state": sandbox.state, "metadata": sandbox.metadata,
                "envdAccessToken": sandbox.access_token, "domain": self.domain}

    # --- routes ---

    async def health(self, request: Request, send: Send) -> None:
        templates = {name: ("error" if t.error else "ready" if t.ready.is_set() else "preparing")
                     for name, t in self.manager.templates.items()}
        errors = {name: t.error for name, t in self.manager.templates.items() if t.error}
        pools = {name: len(pool) for name, pool in self.manager.pools.items()}
        await send_json(send, 200, {"templates": templates, "errors": errors, "pool": pools,
                                    "sandboxes": len(self.manager.sandboxes)})

    async def create(self, request: Request, send: Send) -> None:
        body = await self.body(request)
        template = body.get("templateID")
        if not isinstance(template, str) or not template:
            raise PlatformError(400, "templateID is required")
        # The SDKs omit timeout when the caller gives none; the API's declared default is 300 s.
        timeout = self.manager.check_timeout(body.get("timeout", 300))
        secure = body.get("secure", True) is not False  # older SDKs' flag; v2 always secures envd
        auto_pause = body.get("autoPause", False) is True
        sandbox = await self.manager.create(template, timeout_s=timeout, env_vars=_string_map(body, "envVars"),
                                            metadata=_string_map(body, "metadata"), secure=secure,
                                            auto_pause=auto_pause)
        await send_json(send, 201, self.sandbox_json(sandbox))

    async def connect(self, request: Request, send: Send, id: str) -> None:
        body = await self.body(request)
        timeout = self.manager.check_timeout(body["timeout"]) if "timeout" in body else None
        sandbox, resumed = await self.manager.connect(id, timeout)
        await send_json(send, 201 if resumed else 200, self.sandbox_json(sandbox))

    async def kill(self, request: Request, send: Send, id: str) -> None:
        await self.manager.kill(id)
        await send_response(send, 204)

    async def timeout(self, request: Request, send: Send, id: str) -> None:
        body = await self.body(request)
        if "timeout" not in body:
            raise PlatformError(400, "timeout is required")
        self.manager.set_timeout(id, self.manager.check_timeout(body["timeout"]))
        await send_response(send, 204)

    async def pause(self, request: Request, send: Send, id: str) -> None:
        await self.body(request)
        await self.manager.pause(id)
        await send_response(send, 204)

    async def info(self, request: Request, send: Send, id: str) -> None:
        await send_json(send, 200, self.detail_json(self.manager.get(id)))

    def _filtered(self, request: Request, states: set[str]) -> list[Sandbox]:
        wanted = dict(parse_qsl(request.query.get("metadata", ""), keep_blank_values=True))
        template = request.query.get("template")
        started_after = request.query.get("startedAfter")
        after = _parse_time(started_after) if started_after else None
        found = [s for s in self.manager.sandboxes.values()
                 if s.state in states and all(s.metadata.get(k) == v for k, v in wanted.items())
                 and (template is None or template in (s.template.name, *s.template.aliases))
                 and (after is None or s.started_at > after)]
        found.sort(key=lambda s: (s.started_at, s.id), reverse=request.query.get("order", "desc") != "asc")
        return found

    async def list_v2(self, request: Request, send: Send) -> None:
        states = set(filter(None, request.query.get("state", "running,paused").split(",")))
        if bad := states - {"running", "paused"}:
            raise PlatformError(400, f"unknown state filter {', '.join(sorted(bad))} (running, paused)")
        found = self._filtered(request, states)
        try:
            limit = int(request.query.get("limit", "100"))
            offset = int(base64.urlsafe_b64decode(request.query["nextToken"]).decode()) \
                if request.query.get("nextToken") else 0
        except ValueError:
            raise PlatformError(400, "limit must be an integer and nextToken one this API returned") from None
        if not 1 <= limit <= 100:
            raise PlatformError(400, "limit must be between 1 and 100")
        page = found[offset:offset + limit]
        headers = []
        if offset + limit < len(found):
            headers.append(("x-next-token", base64.urlsafe_b64encode(str(offset + limit).encode()).decode()))
        await send_json(send, 200, [self.detail_json(s) for s in page], headers)

    async def list_v1(self, request: Request, send: Send) -> None:
        await send_json(send, 200, [self.detail_json(s) for s in self._filtered(request, {"running"})])

    async def metrics(self, request: Request, send: Send, id: str) -> None:
        sandbox = self.manager.get(id)
        if sandbox.state == "running":
            await self.manager.sample(sandbox)
        start = _int_query(request, "start", 0)
        end = _int_query(request, "end", int(time.time()) + 1)
        points = [metric_json(raw) for raw in sandbox.samples if start <= raw.get("ts", 0) <= end]
        await send_json(send, 200, points)


def metric_json(raw: dict) -> dict:
    """envd's /metrics -> the API's Metric (sdk-expectations.md §2.3: they map 1:1)."""
    ts = int(raw.get("ts", 0))
    return {"timestamp": rfc3339(ts), "timestampUnix": ts, "cpuCount": raw.get("cpu_count", 0),
            "cpuUsedPct": raw.get("cpu_used_pct", 0.0), "memUsed": raw.get("mem_used", 0),
            "memTotal": raw.get("mem_total", 0), "memCache": raw.get("mem_cache", 0),
            "diskUsed": raw.get("disk_used", 0), "diskTotal": raw.get("disk_total", 0)}


def disk_size_mb(sandbox: Sandbox) -> int:
    try:
        return (sandbox.template.snap_dir / "base.ext4").stat().st_size // (1 << 20)
    except OSError:
        return 0


def _int_query(request: Request, key: str, default: int) -> int:
    try:
        return int(request.query.get(key, default))
    except ValueError:
        raise PlatformError(400, f"{key} must be unix seconds") from None


def _parse_time(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise PlatformError(400, f"startedAfter {value!r} is not an RFC 3339 time") from None
