"""Firecracker metadata service (spec/envd.md §8.1): sandbox/template ids, log collector address, token hash.

FC mode polls it every 50 ms from start-up until one fetch succeeds, then applies the metadata: internal env
vars E2B_SANDBOX_ID / E2B_TEMPLATE_ID (so every child gets them), /run/e2b/.E2B_SANDBOX_ID and
.E2B_TEMPLATE_ID, and the log exporter's address and fields (§8.2). Each /init starts another poll with a
60 s deadline (a resumed snapshot may be a new sandbox) and fetches the token hash afresh (§2.3). Nothing
waits on MMDS: the daemon serves while it is unreachable and picks the values up when it answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..state import SandboxState

log = logging.getLogger("envd")

DEFAULT_ADDRESS = "http://169.254.169.254"
POLL_INTERVAL_S = 0.05
REQUEST_TIMEOUT_S = 10.0
TOKEN_TTL_S = 60
REPOLL_DEADLINE_S = 60.0
SELF_HEAL_WARN_EVERY_S = 10.0


class MMDSError(Exception):
    pass


@dataclass(frozen=True)
class Metadata:
    instance_id: str = ""  # sandbox id
    env_id: str = ""  # template id
    address: str = ""  # log collector URL, may be empty
    access_token_hash: str = ""  # lowercase hex SHA-512, empty when unset

    @classmethod
    def from_json(cls, body: bytes) -> Metadata:
        try:
            data = json.loads(body)
        except ValueError as err:
            raise MMDSError(f"metadata is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise MMDSError("metadata is not a JSON object")

        def text(key: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) else ""

        return cls(text("instanceID"), text("envID"), text("address"), text("accessTokenHash"))


class MMDSClient:
    """The token flow: PUT /latest/api/token, then GET / with the token (one connection per request)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.address = address
        self.timeout = timeout

    def fetch(self) -> Metadata:
        """Blocking; raises MMDSError."""
        # Only FC mode polls: http.client (and ssl) stay off a local daemon's start-up path.
        import http.client

        from . import plain_http

        try:
            token = plain_http.request(
                self.address, "PUT", "/latest/api/token",
                headers={"X-metadata-token-ttl-seconds": str(TOKEN_TTL_S)}, timeout=self.timeout,
            )
            # Upstream does not check statuses; an error body taken as a token or as metadata would
            # then yield empty ids, so non-2xx answers count as failures here.
            if not token.ok or not token.body.strip():
                raise MMDSError(f"token request answered {token.status}")
            metadata = plain_http.request(
                self.address, "GET", "/",
                headers={"X-metadata-token": token.body.decode("latin-1").strip(), "Accept": "application/json"},
                timeout=self.timeout,
            )
        except (OSError, ValueError, http.client.HTTPException) as err:
            raise MMDSError(f"{self.address}: {err}") from None
        if not metadata.ok:
            raise MMDSError(f"metadata request answered {metadata.status}")
        return Metadata.from_json(metadata.body)


class RouteSelfHeal:
    """§8.1.1: re-pin the NAT bypass for the metadata address (guest rules may hijack it); coalesced."""

    def __init__(self) -> None:
        self._running = False
        self._last_warning = -SELF_HEAL_WARN_EVERY_S

    async def run(self) -> None:
        if self._running:
            return  # a concurrent self-heal is already doing it
        self._running = True
        try:
            rule = ["-d", "169.254.169.254", "-p", "tcp", "--dport", "80", "-j", "RETURN"]
            for chain in ("PREROUTING", "OUTPUT"):
                await self._iptables("-D", chain, *rule)  # failure ignored: the rule may not exist
                if (problem := await self._iptables("-I", chain, "1", *rule)) is not None:
                    self._warn(f"MMDS route self-heal on {chain} failed: {problem}")
        finally:
            self._running = False

    @staticmethod
    async def _iptables(*args: str) -> str | None:
        try:
            process = await asyncio.create_subprocess_exec(
                "iptables", "-w", "5", "-t", "nat", *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            _out, err = await process.communicate()
        except OSError as error:
            return str(error)
        return None if process.returncode == 0 else err.decode(errors="replace").strip()

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= SELF_HEAL_WARN_EVERY_S:
            self._last_warning = now
            log.warning(message)


class MMDS:
    """Applies metadata to the sandbox state; polls in the background; answers /init's token-hash question."""

    def __init__(
        self,
        state: SandboxState,
        run_dir: str,
        client: MMDSClient,
        enabled: bool,
        listeners: list[Callable[[Metadata], None]] | None = None,
    ) -> None:
        self.state = state
        self.run_dir = Path(run_dir)
        self.client = client
        self.enabled = enabled  # FC mode; local mode (-isnotfc) never talks to MMDS
        self.listeners = listeners or []
        self.metadata: Metadata | None = None
        # The bypass pins 169.254.169.254 only; a stand-in elsewhere (tests) has no route to heal.
        host = urllib.parse.urlsplit(client.address).hostname
        self._self_heal = RouteSelfHeal() if host == "169.254.169.254" else None
        self._startup: asyncio.Task | None = None
        self._repoll: asyncio.Task | None = None

    def start(self) -> None:
        """§1.3 step 5: poll until the first success, no deadline."""
        if self.enabled and self._startup is None:
            self._startup = asyncio.create_task(self._poll(deadline_s=None))

    def repoll(self) -> None:
        """§3.4.2 step 10: after /init, poll again for up to 60 s (replaces a re-poll still running)."""
        if not self.enabled:
            return  # Q9: upstream re-polls in local mode too, where it can only time out
        if self._repoll is not None:
            self._repoll.cancel()
        self._repoll = asyncio.create_task(self._poll(deadline_s=REPOLL_DEADLINE_S))

    async def token_hash(self) -> str | None:
        """§2.3: a fresh accessTokenHash for /init; None when MMDS is absent (unreachable or hash empty)."""
        if not self.enabled:
            return None
        try:
            metadata = await asyncio.to_thread(self.client.fetch)
        except MMDSError as err:
            if self._self_heal is None:
                log.info("MMDS unavailable for /init: %s", err)
                return None
            await self._self_heal.run()
            try:
                metadata = await asyncio.to_thread(self.client.fetch)
            except MMDSError as err:
                log.info("MMDS unavailable for /init: %s", err)
                return None
        return metadata.access_token_hash or None

    async def _poll(self, deadline_s: float | None) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s if deadline_s is not None else None
        while True:
            try:
                metadata = await asyncio.to_thread(self.client.fetch)
            except MMDSError:
                if give_up is not None and loop.time() >= give_up:
                    print(f"envd: MMDS poll gave up after {deadline_s:.0f} s", file=sys.stderr)
                    return
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            await self.apply(metadata)
            return

    async def apply(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self.state.envs.set_internal("E2B_SANDBOX_ID", metadata.instance_id)
        self.state.envs.set_internal("E2B_TEMPLATE_ID", metadata.env_id)
        await asyncio.to_thread(self._write_files, metadata)
        for listener in self.listeners:
            listener(metadata)
        log.info("MMDS metadata received", extra={"fields": {
            "instanceID": metadata.instance_id, "envID": metadata.env_id, "log_export": bool(metadata.address),
        }})

    def _write_files(self, metadata: Metadata) -> None:
        for name, value in ((".E2B_SANDBOX_ID", metadata.instance_id), (".E2B_TEMPLATE_ID", metadata.env_id)):
            try:
                write_file(self.run_dir / name, value)
            except OSError as err:
                log.warning("cannot write %s: %s", self.run_dir / name, err)

    async def close(self) -> None:
        for task in (self._startup, self._repoll):
            if task is not None:
                task.cancel()


def write_file(path: Path, value: str) -> None:
    """Replace `path` atomically (readers never see it half-written), mode 0666 minus umask, no newline."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # pollers may overlap
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
