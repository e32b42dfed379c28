"""Orchestrator control routes: /freeze, /unfreeze, /fsfreeze, /fsthaw, /collapse, /upgrade (spec/envd.md
§3.9-3.12). Thin adapter: query parsing, status codes; the work lives in envd/host."""

from __future__ import annotations

import asyncio
import logging
import re

from ..errors import Canceled, EnvdError, FailedPrecondition, InvalidArgument
from ..host.freezer import Freezer, check_freeze_args
from ..host.fsfreeze import FilesystemFreezer
from ..host.handover import Handover
from ..state import SandboxState
from .disconnect import watch_disconnect
from .http import HTTPError, Request, Send, send_json, send_response, send_text

log = logging.getLogger("envd")

NO_STORE = ("cache-control", "no-store")
UPGRADE_TARGET = "/usr/bin/envd.next"
_INT = re.compile(r"[+-]?[0-9]+")


class QueryFormatError(Exception):
    """§3.1.3: a query value that does not parse as its declared type -> 400 text/plain."""


def query_int(request: Request, name: str, bits: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    syntax = f'strconv.ParseInt: parsing "{raw}": '
    if not _INT.fullmatch(raw):
        raise QueryFormatError(f"Invalid format for parameter {name}: {syntax}invalid syntax")
    value = int(raw)
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise QueryFormatError(f"Invalid format for parameter {name}: {syntax}value out of range")
    return value


async def _finish(task: asyncio.Future):
    """Await work that must not be abandoned when the caller leaves (§3.11: thaws never are)."""
    return await asyncio.shield(task)


class ControlRoutes:
    def __init__(self, state: SandboxState, freezer: Freezer, fsfreeze: FilesystemFreezer,
                 handover: Handover | None = None) -> None:
        self.state = state
        self.freezer = freezer
        self.fsfreeze = fsfreeze
        self.handover = handover

    def routes(self):
        return [
            ("POST", "/freeze", self.freeze),
            ("POST", "/unfreeze", self.unfreeze),
            ("POST", "/fsfreeze", self.fs_freeze),
            ("POST", "/fsthaw", self.fs_thaw),
            ("POST", "/collapse", self.collapse),
            ("POST", "/upgrade", self.upgrade),
        ]

    async def freeze(self, request: Request, send: Send) -> None:
        try:
            max_cgroups = query_int(request, "maxCgroups", 64)
            max_wait_ms = query_int(request, "maxWaitMs", 64)
        except QueryFormatError as err:
            await send_text(send, 400, f"{err}\n")
            return
        try:
            mode, cap, wait_ms = check_freeze_args(request.query.get("mode"), max_cgroups, max_wait_ms)
        except InvalidArgument as err:
            raise HTTPError(400, err.message) from None
        async with watch_disconnect(request.receive) as gone:
            try:
                result = await self.freezer.freeze(mode, cap, wait_ms, cancelled=gone)
            except Canceled as err:
                log.info("freeze: %s", err.message)
                await send_response(send, 503)
                return
        if wait_ms <= 0:
            await send_response(send, 204, headers=[NO_STORE])
        else:
            await send_json(send, 200, result.to_json(), [NO_STORE])

    async def unfreeze(self, request: Request, send: Send) -> None:
        result = await _finish(asyncio.ensure_future(self.freezer.thaw()))
        if result.failed:
            raise HTTPError(500, f"failed to thaw {result.failed} cgroup(s)")
        await send_response(send, 204, headers=[NO_STORE])

    async def fs_freeze(self, request: Request, send: Send) -> None:
        async with watch_disconnect(request.receive) as gone:
            try:
                await self.fsfreeze.freeze(cancelled=gone)
            except Canceled:
                await send_response(send, 503)
                return
            except EnvdError as err:
                raise HTTPError(500, err.message) from None
        await send_response(send, 204, headers=[NO_STORE])

    async def fs_thaw(self, request: Request, send: Send) -> None:
        try:
            await _finish(asyncio.ensure_future(self.fsfreeze.thaw()))
        except EnvdError as err:
            raise HTTPError(500, err.message) from None
        await send_response(send, 204, headers=[NO_STORE])

    async def collapse(self, request: Request, send: Send) -> None:
        # §3.10: CPython has no control over its heap's page size; a port without it answers zero counters.
        counters = {"regions": 0, "chunks": 0, "collapsed": 0, "alreadyHuge": 0, "skipped": 0, "elapsedMs": 0}
        await send_json(send, 200, counters, [NO_STORE])

    async def upgrade(self, request: Request, send: Send) -> None:
        """§3.12: re-exec this envd in place with the workload kept alive. On success there is no answer at all
        (the connection drops with the old process image); failures keep the old envd serving."""
        if not self.state.initialized:
            await send_text(send, 409, "envd not initialized")
            return
        target = request.headers.get("x-envd-upgrade-bin", "")
        if target not in ("", UPGRADE_TARGET):
            await send_text(send, 400, "unsupported upgrade target")
            return
        if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
            # A Python envd is not one binary: a delivered replacement has nothing to be exec'd as.
            await send_text(send, 501, "delivering a replacement binary is not supported: "
                                       "send an empty body to re-exec the installed envd")
            return
        if self.handover is None:
            await send_text(send, 501, "live upgrade is not supported by this envd")
            return
        try:
            await self.handover.upgrade()
        except FailedPrecondition as err:
            await send_text(send, 409, err.message)
        except EnvdError as err:
            log.error("live upgrade failed: %s", err.message)
            await send_text(send, 500, err.message)
