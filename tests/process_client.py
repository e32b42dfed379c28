"""A bare Connect client for `process.Process` streams: raw sockets, no SDK, no httpx.

Fault tests and benchmarks need what the SDKs hide: dropping a connection mid-stream, stopping reading,
thousands of concurrent streams, the binary codec. Requests carry `Content-Length`; responses are HTTP/1.1
chunked bodies holding Connect envelopes (spec/envd.md §4.2: flag byte, 4-byte big-endian length, payload).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

JSON = "application/connect+json"
PROTO = "application/connect+proto"
END_STREAM = 0x02


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def start_request(
    cmd: str,
    args: list[str] | None = None,
    *,
    envs: dict[str, str] | None = None,
    cwd: str | None = None,
    stdin: bool | None = False,
    pty: dict | None = None,
    tag: str | None = None,
) -> dict:
    process: dict = {"cmd": cmd, "args": args or []}
    if envs:
        process["envs"] = envs
    if cwd is not None:
        process["cwd"] = cwd
    body: dict = {"process": process}
    if stdin is not None:
        body["stdin"] = stdin
    if pty is not None:
        body["pty"] = pty
    if tag is not None:
        body["tag"] = tag
    return body


def http_request(procedure: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"POST /{procedure} HTTP/1.1",
        "Host: envd",
        f"Content-Type: {content_type}",
        "Connect-Protocol-Version: 1",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class EnvelopeBuffer:
    """Accumulates body bytes and hands out complete envelopes."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out = []
        pos, end = 0, len(self._buf)
        with memoryview(self._buf) as view:
            while end - pos >= 5:
                flags, length = struct.unpack_from(">BI", view, pos)
                if end - pos - 5 < length:
                    break
                out.append((flags, bytes(view[pos + 5 : pos + 5 + length])))
                pos += 5 + length
        if pos:
            del self._buf[:pos]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


@dataclass
class Outcome:
    """Everything one Start/Connect stream said, decoded from JSON payloads."""

    pid: int | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    pty: bytearray = field(default_factory=bytearray)
    end: dict | None = None
    trailer: dict | None = None
    keepalives: int = 0
    order: list[str] = field(default_factory=list)

    def add(self, flags: int, message: dict) -> None:
        if flags & END_STREAM:
            self.trailer = message
            return
        event = message.get("event", {})
        if "start" in event:
            self.order.append("start")
            self.pid = event["start"].get("pid", 0)
        elif "data" in event:
            self.order.append("data")
            for name, sink in (("stdout", self.stdout), ("stderr", self.stderr), ("pty", self.pty)):
                if name in event["data"]:
                    sink += base64.b64decode(event["data"][name])
        elif "end" in event:
            self.order.append("end")
            self.end = event["end"]
        elif "keepalive" in event:
            self.keepalives += 1


class RawStream:
    """One server-streaming call over its own asyncio TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self._envelopes = EnvelopeBuffer()
        self._ready: list[tuple[int, bytes]] = []
        self._body_done = False

    @classmethod
    async def open(
        cls,
        port: int,
        procedure: str,
        message: dict | bytes,
        *,
        content_type: str = JSON,
        headers: dict[str, str] | None = None,
        limit: int = 1 << 20,
    ) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=limit)
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        writer.write(http_request(procedure, envelope(payload), content_type, headers))
        await writer.drain()
        stream = cls(reader, writer)
        await stream._read_head()
        return stream

    async def _read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                self.headers[name.strip().lower()] = value.strip()
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            # A Content-Length body (e.g. an error answered before streaming began).
            length = int(self.headers.get("content-length", "0"))
            self._ready += self._envelopes.feed(await self.reader.readexactly(length))
            self._body_done = True

    async def _next_chunk(self) -> bytes | None:
        if self._body_done:
            return None
        size_line = await self.reader.readline()
        if not size_line:
            raise ConnectionError("connection closed inside a chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            await self.reader.readline()
            self._body_done = True
            return None
        data = await self.reader.readexactly(size)
        await self.reader.readexactly(2)
        return data

    async def next_envelope(self) -> tuple[int, bytes] | None:
        while not self._ready:
            chunk = await self._next_chunk()
            if chunk is None:
                if self._envelopes.pending:
                    raise ConnectionError(f"{self._envelopes.pending} trailing bytes after the last envelope")
                return None
            self._ready += self._envelopes.feed(chunk)
        return self._ready.pop(0)

    async def messages(self) -> AsyncIterator[tuple[int, dict]]:
        while (item := await self.next_envelope()) is not None:
            flags, payload = item
            yield flags, json.loads(payload)

    async def collect(self, outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()
        async for flags, message in self.messages():
            outcome.add(flags, message)
        return outcome

    def abort(self) -> None:
        """Drop the connection without a goodbye (RST), as a crashed client would."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def run_command(port: int, request: dict, headers: dict[str, str] | None = None) -> Outcome:
    stream = await RawStream.open(port, "process.Process/Start", request, headers=headers)
    try:
        return await stream.collect()
    finally:
        await stream.close()
