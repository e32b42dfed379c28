"""Streaming an upload body to disk (spec/envd.md §3.7.1, §3.7.2): raw and multipart sinks, and the pump.

The event loop only receives body chunks and batches them; a worker thread does everything else
for a batch (gunzip, multipart parsing, file writes) while the loop receives the next one. At most
two batches are in memory, whatever the body size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser

from ..auth.users import User
from ..paths import PathError
from ..services.filesystem.transfer import FileUpload, WrittenFile
from .encoding import HeaderParamError, parse_header_params, unescape_form_filename
from .gzip_stream import GzipDecoder, GzipError
from .http import HTTPError

BATCH_BYTES = 1 << 20


class BodySink(Protocol):
    def feed(self, data: bytes) -> None: ...
    def feed_parts(self, parts: list[bytes]) -> None: ...
    def finish(self) -> list[WrittenFile]: ...
    def abort(self) -> None: ...


class UploadTargets:
    """The files of one request, opened in body order; a second write to a path is refused (§3.7.2)."""

    def __init__(self, user: User, metadata: dict[str, str], resolve: Callable[[str], str]) -> None:
        self.user = user
        self.metadata = metadata
        self.resolve = resolve
        self.written: list[WrittenFile] = []
        self.current: FileUpload | None = None

    def begin(self, raw_path: str) -> None:
        try:
            path = self.resolve(raw_path)
        except PathError as err:
            raise HTTPError(400, f"error resolving path: {err}") from None
        if "\0" in path:
            raise HTTPError(400, "error resolving path: path contains a NUL byte")
        if any(done.path == path for done in self.written):
            message = (
                f"you cannot upload multiple files to the same path '{path}' in one upload request, "
                "only the first specified file was uploaded"
            )
            others = [done.path for done in self.written if done.path != path]
            if len(others) > 1:
                message += f", also the following files were uploaded: {', '.join(others)}"
            raise HTTPError(400, message)
        upload = FileUpload(path, self.user.uid, self.user.gid, self.metadata)
        upload.open()
        self.current = upload

    def write(self, data: bytes | memoryview) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        assert self.current is not None
        try:
            self.current.write_parts(parts)
        except BaseException:
            self.abort()
            raise

    def end(self) -> None:
        assert self.current is not None
        upload, self.current = self.current, None
        try:
            self.written.append(upload.commit())
        except BaseException:
            upload.discard()
            raise

    def abort(self) -> None:
        if self.current is not None:
            upload, self.current = self.current, None
            upload.discard()


class RawBody:
    """application/octet-stream: the body is the file (§3.7.1). The file is opened with the first byte
    batch, or at finish() for an empty body."""

    def __init__(self, targets: UploadTargets, raw_path: str) -> None:
        self.targets = targets
        self.raw_path = raw_path
        self._opened = False

    def _open(self) -> None:
        if not self._opened:
            self._opened = True
            self.targets.begin(self.raw_path)

    def feed(self, data: bytes) -> None:
        self.feed_parts([data])

    def feed_parts(self, parts: list[bytes]) -> None:
        self._open()
        self.targets.write_parts(parts)

    def finish(self) -> list[WrittenFile]:
        self._open()
        self.targets.end()
        return self.targets.written

    def abort(self) -> None:
        self.targets.abort()


class MultipartBody:
    """multipart/form-data or multipart/mixed, parts streamed to their files in body order (§3.7.2)."""

    def __init__(self, boundary: str, targets: UploadTargets, path_param: str | None) -> None:
        self.targets = targets
        self.path_param = path_param
        self.ended = False
        self._headers: dict[str, str] = {}
        self._name: list[bytes] = []
        self._value: list[bytes] = []
        self._wanted = False
        self.parser = MultipartParser(
            boundary.encode("latin-1"),
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._name.append(data[start:end]),
                "on_header_value": lambda data, start, end: self._value.append(data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
            # Filenames are whole paths (up to PATH_MAX, escaped), and clients add their own headers.
            max_header_count=64,
            max_header_size=64 * 1024,
        )

    def _part_begin(self) -> None:
        self._headers = {}
        self._wanted = False

    def _header_end(self) -> None:
        name = b"".join(self._name).decode("latin-1").strip().lower()
        raw = b"".join(self._value)
        self._name, self._value = [], []
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("latin-1")
        self._headers.setdefault(name, value.strip())

    def _headers_finished(self) -> None:
        try:
            kind, params = parse_header_params(self._headers.get("content-disposition", ""))
        except HeaderParamError:
            kind, params = "", {}
        if kind != "form-data" or params.get("name") != "file":
            return  # parts not named `file` are skipped silently
        if self.path_param is not None:
            raw_path = self.path_param
        elif "filename" in params:
            # The filename is the destination path, directories included (never reduced to a base name).
            raw_path = unescape_form_filename(params["filename"])
        else:
            raise HTTPError(
                400, "error getting multipart custom part file name: no filename in the part's Content-Disposition"
            )
        self.targets.begin(raw_path)
        self._wanted = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._wanted and end > start:
            self.targets.write(memoryview(data)[start:end])

    def _part_end(self) -> None:
        if self._wanted:
            self._wanted = False
            self.targets.end()

    def _end(self) -> None:
        self.ended = True

    def feed(self, data: bytes) -> None:
        if self.ended:
            return  # the epilogue after the closing boundary is ignored
        try:
            self.parser.write(data)
        except FormParserError as err:
            raise HTTPError(500, f"error reading form: {err}") from None

    def feed_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self.feed(part)

    def finish(self) -> list[WrittenFile]:
        if not self.ended:
            raise HTTPError(500, "error reading form: unexpected EOF")
        return self.targets.written

    def abort(self) -> None:
        self.targets.abort()


class GunzipBody:
    """A gzip request body (§3.7 step 3) decompressed into another sink."""

    def __init__(self, inner: BodySink) -> None:
        self.inner = inner
        self.decoder = GzipDecoder(inner.feed)

    def feed(self, data: bytes) -> None:
        try:
            self.decoder.feed(data)
        except GzipError as err:
            raise HTTPError(400, f"error decompressing request body: {err}") from None

    def feed_parts(self, parts: list[bytes]) -> None:
        for part in parts:
            self.feed(part)

    def finish(self) -> list[WrittenFile]:
        try:
            self.decoder.finish()
        except GzipError as err:
            raise HTTPError(400, f"error decompressing request body: {err}") from None
        return self.inner.finish()

    def abort(self) -> None:
        self.inner.abort()


async def pump(chunks: AsyncIterator[bytes], sink: BodySink, first: bytes = b"") -> list[WrittenFile]:
    """Feed the body to `sink` in batches, each in a worker thread overlapping the next receive.

    On any failure (including the client going away) the sink is aborted, after its in-flight batch.
    """
    pending: asyncio.Future | None = None
    batch: list[bytes] = [first] if first else []
    size = len(first)

    def finish(parts: list[bytes]) -> list[WrittenFile]:
        if parts:
            sink.feed_parts(parts)
        return sink.finish()

    try:
        async for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= BATCH_BYTES:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(sink.feed_parts, batch))
                batch, size = [], 0
        if pending is not None:
            await pending
            pending = None
        return await asyncio.to_thread(finish, batch)
    except BaseException:
        if pending is not None and not pending.done():
            await asyncio.wait([pending])  # the thread still uses the sink
        if pending is not None and pending.done() and not pending.cancelled():
            pending.exception()  # retrieved: the error that matters is the one propagating
        await asyncio.to_thread(sink.abort)
        raise
