"""Serving a file body (spec/envd.md §3.6 step 12): static-file semantics for identity, streamed gzip.

Identity follows Go's http.ServeContent: Last-Modified, Accept-Ranges, single ranges (206),
multiple ranges (multipart/byteranges), 416, and the conditional headers (304/412).
Chunks are read in a worker thread one ahead of the send, so disk and socket overlap.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ..services.filesystem.transfer import FileChunks
from .gzip_stream import GzipEncoder
from .http import HTTPError, Receive, Send

log = logging.getLogger("envd")

CHUNK_BYTES = 2 << 20


def http_date(timestamp: float) -> str:
    return email.utils.formatdate(int(timestamp), usegmt=True)


def parse_http_date(value: str) -> int | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


# --- ranges -----------------------------------------------------------------------------------------


class RangeNotSatisfiable(Exception):
    def __init__(self, message: str, no_overlap: bool) -> None:
        super().__init__(message)
        self.no_overlap = no_overlap


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{size}"


def _int(text: str) -> int:
    if not text.isdigit():
        raise RangeNotSatisfiable("invalid range", False)
    return int(text)


def parse_range(header: str, size: int) -> list[ByteRange]:
    """Go's parseRange: `bytes=a-b, c-, -n`; ranges starting past the end are dropped."""
    if not header:
        return []
    if not header.startswith("bytes="):
        raise RangeNotSatisfiable("invalid range", False)
    ranges: list[ByteRange] = []
    no_overlap = False
    for item in header[len("bytes="):].split(","):
        item = item.strip()
        if not item:
            continue
        first, sep, last = item.partition("-")
        if not sep:
            raise RangeNotSatisfiable("invalid range", False)
        first, last = first.strip(), last.strip()
        if not first:
            suffix = _int(last)
            if suffix == 0:
                no_overlap = True
                continue
            suffix = min(suffix, size)
            ranges.append(ByteRange(size - suffix, suffix))
            continue
        start = _int(first)
        if start >= size:
            no_overlap = True
            continue
        if not last:
            ranges.append(ByteRange(start, size - start))
            continue
        end = _int(last)
        if start > end:
            raise RangeNotSatisfiable("invalid range", False)
        end = min(end, size - 1)
        ranges.append(ByteRange(start, end - start + 1))
    if no_overlap and not ranges:
        raise RangeNotSatisfiable("invalid range: failed to overlap", True)
    return ranges


# --- conditional requests ---------------------------------------------------------------------------


def precondition_status(headers: dict[str, str], mtime: int | None) -> int | None:
    """304/412 from If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since (no ETag exists)."""
    if_match = headers.get("if-match")
    if if_match is not None:
        if if_match.strip() != "*":
            return 412
    elif mtime is not None and (since := headers.get("if-unmodified-since")):
        limit = parse_http_date(since)
        if limit is not None and mtime > limit:
            return 412
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        return 304 if if_none_match.strip() == "*" else None
    if mtime is not None and (since := headers.get("if-modified-since")):
        limit = parse_http_date(since)
        if limit is not None and mtime <= limit:
            return 304
    return None


def range_applies(headers: dict[str, str], mtime: int | None) -> bool:
    """If-Range: only a date equal to the file's mtime keeps the Range (entity tags never match)."""
    value = headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return False
    return mtime is not None and parse_http_date(value) == mtime


# --- sending ----------------------------------------------------------------------------------------


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def send_body_stream(send: Send, receive: Receive, produce: Callable[[], bytes]) -> None:
    """Send produce() results until it returns b"" (each call in a worker thread, one read ahead).

    Stops early when the client disconnects; the in-flight read is awaited before returning so the
    caller can close the file.
    """
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
    ahead = asyncio.ensure_future(asyncio.to_thread(produce))
    try:
        while True:
            chunk = await ahead
            if not chunk:
                break
            ahead = asyncio.ensure_future(asyncio.to_thread(produce))
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        if not ahead.done():
            await asyncio.wait([ahead])
        if not ahead.cancelled() and ahead.exception() is not None:
            log.warning("download aborted: %s", ahead.exception())


async def start_response(send: Send, status: int, headers: list[tuple[str, str]]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})


@dataclass
class FileBody:
    """What the adapter knows about the file being downloaded."""

    fd: int
    size: int | None  # None: not a regular file, length unknown
    mtime: int | None  # None: not sent (zero time)
    head: Callable[[], bytes]  # first bytes, for sniffing
    content_type: str | None  # by extension of the raw path


async def serve_gzip(send: Send, receive: Receive, body: FileBody, headers: list[tuple[str, str]]) -> None:
    encoder = GzipEncoder()
    chunks = FileChunks(body.fd, chunk_size=CHUNK_BYTES)
    done = False

    def produce() -> bytes:
        nonlocal done
        if done:
            return b""
        data = chunks.read()
        if data:
            return encoder.encode(data)
        done = True
        return encoder.finish()

    await start_response(
        send,
        200,
        [*headers, ("content-encoding", "gzip"), ("content-type", body.content_type or "application/octet-stream")],
    )
    await send_body_stream(send, receive, produce)


async def serve_identity(
    send: Send,
    receive: Receive,
    request_headers: dict[str, str],
    body: FileBody,
    headers: list[tuple[str, str]],
) -> None:
    content_type = body.content_type or await asyncio.to_thread(body.head)
    headers = list(headers)
    if body.mtime is not None:
        headers.append(("last-modified", http_date(body.mtime)))

    status = precondition_status(request_headers, body.mtime)
    if status == 304:
        await start_response(send, 304, headers)
        await send({"type": "http.response.body", "body": b""})
        return
    if status == 412:
        raise HTTPError(412, "precondition failed")

    if body.size is None:
        # FIFOs and devices: no length to announce or to range over.
        await start_response(send, 200, [*headers, ("content-type", content_type)])
        chunks = FileChunks(body.fd, chunk_size=CHUNK_BYTES)
        await send_body_stream(send, receive, chunks.read)
        return

    size = body.size
    headers.append(("accept-ranges", "bytes"))
    ranges: list[ByteRange] = []
    range_header = request_headers.get("range")
    if range_header and range_applies(request_headers, body.mtime):
        try:
            ranges = parse_range(range_header, size)
        except RangeNotSatisfiable as err:
            extra = [("content-range", f"bytes */{size}")] if err.no_overlap else []
            raise RangeError(str(err), extra) from None
        if sum(r.length for r in ranges) > size:
            ranges = []  # asking for more than the whole file: serve it whole, as Go does

    if not ranges:
        await start_response(send, 200, [*headers, ("content-type", content_type), ("content-length", str(size))])
        chunks = FileChunks(body.fd, 0, size, CHUNK_BYTES)
        await send_body_stream(send, receive, chunks.read)
        return

    if len(ranges) == 1:
        [one] = ranges
        await start_response(
            send,
            206,
            [
                *headers,
                ("content-type", content_type),
                ("content-range", one.content_range(size)),
                ("content-length", str(one.length)),
            ],
        )
        chunks = FileChunks(body.fd, one.start, one.length, CHUNK_BYTES)
        await send_body_stream(send, receive, chunks.read)
        return

    boundary = secrets.token_hex(30)
    part_heads = [
        (f"\r\n--{boundary}\r\n" if i else f"--{boundary}\r\n").encode()
        + f"Content-Range: {r.content_range(size)}\r\nContent-Type: {content_type}\r\n\r\n".encode()
        for i, r in enumerate(ranges)
    ]
    tail = f"\r\n--{boundary}--\r\n".encode()
    total = sum(len(h) for h in part_heads) + sum(r.length for r in ranges) + len(tail)
    pieces: list[bytes | FileChunks] = []
    for head, r in zip(part_heads, ranges):
        pieces += [head, FileChunks(body.fd, r.start, r.length, CHUNK_BYTES)]
    pieces.append(tail)

    def produce() -> bytes:
        while pieces:
            piece = pieces[0]
            if isinstance(piece, bytes):
                pieces.pop(0)
                return piece
            data = piece.read()
            if data:
                return data
            pieces.pop(0)
        return b""

    await start_response(
        send,
        206,
        [
            *headers,
            ("content-type", f"multipart/byteranges; boundary={boundary}"),
            ("content-length", str(total)),
        ],
    )
    await send_body_stream(send, receive, produce)


class RangeError(HTTPError):
    """416, with `Content-Range: bytes */size` when no range overlaps the file."""

    def __init__(self, message: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(416, message)
        self.headers = headers
