"""What the control plane says to envd inside a VM: /health, /init, /metrics, and a warm-up call.

The wire forms are envd's own (spec/envd.md §3, sdk-expectations.md §2.3 "What the control plane must do").
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import time
from datetime import UTC, datetime

import httpx

from .qemu import VMError


def client() -> httpx.AsyncClient:
    # One pool for all guests; the proxy has its own (its requests stream and may last long).
    return httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=httpx.Limits(max_keepalive_connections=50))


async def wait_healthy(http: httpx.AsyncClient, base: str, timeout: float, alive=lambda: True) -> float:
    """Poll GET /health until 204; seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not alive():
            raise VMError("QEMU exited before envd was healthy")
        try:
            response = await http.get(f"{base}/health", timeout=2.0)
            if response.status_code == 204:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise VMError(f"envd not healthy within {timeout:.0f} s")


def rfc3339_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def init(http: httpx.AsyncClient, base: str, *, access_token: str | None, env_vars: dict[str, str] | None,
               default_user: str = "user", timeout: float = 30.0) -> None:
    """POST /init: token, env vars, default user, the host's clock, and fresh randomness for the kernel CRNG
    (clones of one saved state share it: envd/host/entropy.py). Without a token and env vars it is what the
    template gets before its save (the default user, as upstream's template build leaves it)."""
    body: dict = {"defaultUser": default_user, "timestamp": rfc3339_now(),
                  "entropy": base64.b64encode(secrets.token_bytes(64)).decode()}
    if env_vars is not None:
        body["envVars"] = env_vars
    headers = {}
    if access_token:
        body["accessToken"] = access_token
        headers["X-Access-Token"] = access_token
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = await http.post(f"{base}/init", json=body, headers=headers, timeout=10.0)
            break
        except httpx.HTTPError as err:
            if time.monotonic() > deadline:
                raise VMError(f"/init got no answer: {err}") from None
            await asyncio.sleep(0.02)
    if response.status_code != 204:
        raise VMError(f"/init answered {response.status_code}: {response.text.strip()}")


def _envelope(payload: dict) -> bytes:
    data = json.dumps(payload).encode()
    return struct.pack(">BI", 0, len(data)) + data


async def run(http: httpx.AsyncClient, base: str, command: str, access_token: str | None = None,
              timeout: float = 60.0) -> bytes:
    """Process/Start `bash -l -c command` as the SDK sends it (default user, keepalive and deadline headers)
    and wait for its end; the raw stream.

    Used to warm a VM up (envd's lazily loaded services, TCG's translation of the spawn and output paths)
    before it is saved or parked, so a sandbox's first command does not pay for it.
    """
    headers = {"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
               "Keepalive-Ping-Interval": "50", "Connect-Timeout-Ms": str(int(timeout * 1000))}
    if access_token:
        headers["X-Access-Token"] = access_token
    body = _envelope({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", command]}, "stdin": False})
    response = await http.post(f"{base}/process.Process/Start", content=body, headers=headers, timeout=timeout)
    if response.status_code != 200 or b'"end"' not in response.content:
        raise VMError(f"warm-up command {command!r} failed: {response.status_code} {response.content[:200]!r}")
    return response.content


def stdout_of(stream: bytes) -> str:
    """The stdout a Process/Start response stream carried (Connect envelopes of JSON events)."""
    out, offset = b"", 0
    while offset + 5 <= len(stream):
        flags, length = struct.unpack(">BI", stream[offset:offset + 5])
        payload = stream[offset + 5:offset + 5 + length]
        offset += 5 + length
        if flags == 0:
            data = json.loads(payload).get("event", {}).get("data", {})
            if "stdout" in data:
                out += base64.b64decode(data["stdout"])
    return out.decode(errors="replace")


async def envd_version(http: httpx.AsyncClient, base: str) -> str:
    """What the image's envd reports (`envd -version`): the envdVersion the SDKs gate features on (§7)."""
    return stdout_of(await run(http, base, "/usr/bin/envd -version")).strip()


async def warm_up(http: httpx.AsyncClient, base: str, code_base: str | None, timeout: float = 120.0) -> None:
    """Commands with output, a file write and read and, with kernels, a code cell: a first SDK call's paths."""
    for _ in range(2):
        await run(http, base, "echo warm", timeout=timeout)
    await http.post(f"{base}/files", params={"path": "/tmp/.envd-warm-up"}, files={"file": b"warm"},
                    timeout=timeout)
    await http.get(f"{base}/files", params={"path": "/tmp/.envd-warm-up"}, timeout=timeout)
    if code_base:
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = await http.post(f"{code_base}/execute", json={"code": "1 + 1"}, timeout=timeout)
                if response.status_code == 200 and b'"result"' in response.content:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise VMError("the code interpreter (port 49999) did not run code during warm-up")
            await asyncio.sleep(0.5)


async def metrics(http: httpx.AsyncClient, base: str, access_token: str | None) -> dict:
    headers = {"X-Access-Token": access_token} if access_token else {}
    response = await http.get(f"{base}/metrics", headers=headers, timeout=10.0)
    if response.status_code != 200:
        raise VMError(f"envd /metrics answered {response.status_code}")
    return response.json()
