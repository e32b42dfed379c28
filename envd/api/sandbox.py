"""Sandbox-level REST routes: /health, /init, /envs, /metrics (spec/envd.md §3.2-3.5)."""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from .. import ENVD_VERSION
from ..auth.init_token import init_token_rejection
from ..errors import Canceled, InvalidArgument
from ..host import metrics
from ..host.ca_bundle import check_pem
from ..host.freezer import Freezer
from ..host.handover import Handover
from ..host.locks import acquire_unless
from ..host.volumes import MountError, Volume, VolumeMounter, parse_volumes
from ..state import SandboxState
from .disconnect import watch_disconnect
from .http import Request, Send, send_json, send_response, send_text

log = logging.getLogger("envd")

NO_STORE = ("cache-control", "no-store")
VERSION_HEADER = ("x-envd-version", ENVD_VERSION)

_FRACTION = re.compile(r"\.(\d+)")


class InitBodyError(ValueError):
    pass


@dataclass
class InitRequest:
    env_vars: dict[str, str] | None = None
    access_token: str | None = None
    timestamp_ns: int | None = None
    default_user: str = ""
    default_workdir: str = ""
    ca_bundle: str = ""
    volume_mounts: list[Volume] | None = None  # present (even empty) -> the mount logic runs (§3.4.1)
    lifecycle_id: str = ""
    # Platform extension: host randomness for the kernel CRNG (envd/host/entropy.py).
    entropy: bytes = b""
    extra: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes) -> InitRequest:
        if not body.strip():
            return cls()
        try:
            data = json.loads(body)
        except ValueError as err:
            raise InitBodyError(str(err)) from err
        if not isinstance(data, dict):
            raise InitBodyError("body is not a JSON object")
        token = data.get("accessToken")
        if token is not None and (not isinstance(token, str) or not token or "\\" in token):
            raise InitBodyError("invalid accessToken")
        env_vars = data.get("envVars")
        if env_vars is not None and (
            not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values())
        ):
            raise InitBodyError("envVars must map strings to strings")
        timestamp = data.get("timestamp")
        try:
            entropy = binascii.a2b_base64(_string(data, "entropy"), strict_mode=True)
        except binascii.Error as err:
            raise InitBodyError(f"entropy must be base64: {err}") from err
        return cls(
            env_vars=env_vars,
            access_token=token,
            timestamp_ns=parse_rfc3339_ns(timestamp) if timestamp is not None else None,
            default_user=_string(data, "defaultUser"),
            default_workdir=_string(data, "defaultWorkdir"),
            ca_bundle=_string(data, "caBundle"),
            volume_mounts=_volumes(data.get("volumeMounts")),
            lifecycle_id=_string(data, "lifecycleID"),
            entropy=entropy,
            extra=data,
        )

    def check(self) -> None:
        """Validation beyond the JSON shape, before anything is applied: raises InvalidArgument (400 with text)."""
        if self.ca_bundle:
            try:
                check_pem(self.ca_bundle)
            except InvalidArgument as err:
                raise InvalidArgument(f"failed to install CA bundle: {err.message}") from None


def _volumes(value: object) -> list[Volume] | None:
    if value is None:
        return None
    try:
        return parse_volumes(value)
    except InvalidArgument as err:
        raise InitBodyError(err.message) from None


def _string(data: dict, key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InitBodyError(f"{key} must be a string")
    return value


def parse_rfc3339_ns(value: object) -> int:
    """RFC 3339 with offset -> Unix nanoseconds, keeping all nine fraction digits."""
    if not isinstance(value, str):
        raise InitBodyError("timestamp must be an RFC 3339 string")
    nanos = 0
    match = _FRACTION.search(value)
    if match:
        digits = match.group(1)
        nanos = int(digits[:9].ljust(9, "0"))
        value = value[: match.start()] + value[match.end():]
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError as err:
        raise InitBodyError(f"invalid timestamp: {err}") from err
    if parsed.tzinfo is None:
        raise InitBodyError("timestamp needs a UTC offset")
    return int(parsed.timestamp()) * 1_000_000_000 + nanos


class Clock:
    def sync(self, host_ns: int) -> None: ...


class Entropy:
    def mix(self, data: bytes) -> None: ...


class SandboxRoutes:
    def __init__(
        self,
        state: SandboxState,
        clock: Clock,
        mmds_token_hash: Callable[[], Awaitable[str | None]],
        install_ca_bundle: Callable[[str, asyncio.Event | None], Awaitable[None]],
        freezer: Freezer | None = None,
        volumes: VolumeMounter | None = None,
        handover: Handover | None = None,
        after_init: Callable[[], None] | None = None,
        entropy: Entropy | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self.entropy = entropy
        self.mmds_token_hash = mmds_token_hash
        self.install_ca_bundle = install_ca_bundle
        self.freezer = freezer or Freezer(None)
        self.volumes = volumes or VolumeMounter()
        self.handover = handover
        self.after_init = after_init  # §3.4.2 step 10: MMDS re-poll
        self._init_lock = asyncio.Lock()
        metrics.prime_cpu_sampler()

    def routes(self) -> list[tuple[str, str, Callable[[Request, Send], Awaitable[None]]]]:
        return [
            ("GET", "/health", self.health),
            ("POST", "/init", self.init),
            ("GET", "/envs", self.envs),
            ("GET", "/metrics", self.metrics),
        ]

    async def health(self, request: Request, send: Send) -> None:
        await send_response(send, 204, headers=[NO_STORE])

    async def envs(self, request: Request, send: Send) -> None:
        envs = dict(sorted(self.state.envs.all().items()))
        await send_json(send, 200, envs, [NO_STORE])

    async def metrics(self, request: Request, send: Send) -> None:
        try:
            figures = await asyncio.to_thread(metrics.collect)
        except Exception:
            log.exception("metrics collection failed")
            await send_response(send, 500)
            return
        await send_json(send, 200, figures, [NO_STORE])

    async def init(self, request: Request, send: Send) -> None:
        # §3.4.2 step 1: on every answer, errors and stale requests included.
        fixed = [VERSION_HEADER]
        if self.handover is not None and (report := self.handover.header()) is not None:
            fixed.append(("x-envd-handover", report))
        try:
            body = InitRequest.parse(await request.body())
        except (InitBodyError, UnicodeDecodeError) as err:
            log.info("rejected /init body: %s", err)
            await send_response(send, 400, headers=fixed)
            return
        try:
            body.check()
        except InvalidArgument as err:
            log.info("rejected /init body: %s", err.message)
            await send_text(send, 400, err.message, fixed)
            return
        async with watch_disconnect(request.receive) as gone:
            status, text, headers = await self._init_locked(body, gone)
        if text is None:
            await send_response(send, status, headers=[*fixed, *headers])
        else:
            await send_text(send, status, text, [*fixed, *headers])

    async def _init_locked(self, body: InitRequest, gone: asyncio.Event) -> tuple[int, str | None, list]:
        try:
            await acquire_unless(self._init_lock, gone, "/init lock")
        except Canceled:
            return 503, None, []
        try:
            mmds_hash = await self.mmds_token_hash()
            if reason := init_token_rejection(self.state.token, body.access_token, mmds_hash):
                return 401, reason, []
            headers = []
            if self.handover is not None:
                self.handover.initialized()  # this /init thaws: the upgrade's fallback thaw is not needed
            if (audit := self.freezer.audit()) is not None:
                headers.append(("x-envd-freeze-audit", json.dumps(audit, separators=(",", ":"))))
            try:
                status, text = await self._apply(body, gone)
            finally:
                # §3.4.2 step 6: the workload thaw runs whatever happened from here on, and is never abandoned.
                thaw = asyncio.ensure_future(self.freezer.thaw())
                try:
                    await asyncio.shield(thaw)
                except Exception:
                    log.exception("thaw after /init failed")
            return status, text, headers if status >= 400 else [*headers, NO_STORE]
        finally:
            self._init_lock.release()

    async def _apply(self, body: InitRequest, gone: asyncio.Event) -> tuple[int, str | None]:
        if body.timestamp_ns is not None and body.timestamp_ns < self.state.last_set_time:
            # Stale (replayed) request: answered like a success, nothing applied (§3.4.2 step 7).
            return 204, None
        if body.timestamp_ns is not None:
            self.state.last_set_time = body.timestamp_ns
            self.clock.sync(body.timestamp_ns)
        if body.entropy and self.entropy is not None:
            self.entropy.mix(body.entropy)
        if body.env_vars is not None:
            self.state.envs.replace_user(body.env_vars)
        self.state.token.set(body.access_token)
        if body.default_user:
            self.state.default_user = body.default_user
        if body.default_workdir:
            self.state.default_workdir = body.default_workdir
        if body.ca_bundle:
            try:
                await self.install_ca_bundle(body.ca_bundle, gone)
            except Canceled as err:
                return 503, f"failed to install CA bundle: {err.message}"
            except OSError as err:
                return 400, f"failed to install CA bundle: {err}"
        if body.volume_mounts is not None:
            try:
                await self.volumes.setup(body.volume_mounts, body.lifecycle_id)
            except (MountError, OSError) as err:
                return 400, f"failed to setup NFS volumes: {err}"
        self.state.initialized = True
        if self.after_init is not None:
            self.after_init()
        return 204, None
