"""/files routes: download, upload, compose (spec/envd.md §2.6, §3.6-3.8).

Thin HTTP adapter: query/headers, signed-URL auth, user lookup, status codes and messages. The file
work lives in services/filesystem (transfer, compose, metadata); body streaming in upload_body and
file_response.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import stat

from ..auth.signatures import SignatureError, check_signature
from ..auth.users import UnknownUser, User, lookup_user
from ..errors import EnvdError, InvalidArgument, NotFound, ResourceExhausted, Unauthenticated
from ..paths import PathError, resolve_path
from ..services.filesystem.compose import Source, compose
from ..services.filesystem.metadata import validate_metadata
from ..services.filesystem.transfer import DiskFull, WrittenFile, open_for_download, stat_for_download
from ..state import SandboxState
from . import content_type, encoding
from .file_response import FileBody, RangeError, serve_gzip, serve_identity
from .gzip_stream import GzipError, check_gzip_header
from .http import ClientDisconnected, HTTPError, Request, Send, send_error, send_json, send_text
from .upload_body import GunzipBody, MultipartBody, RawBody, UploadTargets, pump

CONDITIONAL_HEADERS = ("range", "if-modified-since", "if-none-match", "if-range")
METADATA_PREFIX = "x-metadata-"
# A client whose upload is refused before it proved who it is gets at most this much body read back.
UNAUTHENTICATED_DRAIN_BYTES = 8 << 20
COMPOSE_BODY_LIMIT = 16 << 20

_INT64 = re.compile(r"[+-]?[0-9]+")


class QueryFormatError(Exception):
    """§3.1.3: a query value that does not parse as its declared type -> 400 text/plain."""


def status_of(err: EnvdError) -> int:
    if isinstance(err, InvalidArgument):
        return 400
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, Unauthenticated):
        return 401
    if isinstance(err, ResourceExhausted):
        return 507  # Insufficient Storage: the SDKs raise NotEnoughSpaceException
    return 500


def entry_json(written: WrittenFile) -> dict:
    entry: dict = {"path": written.path, "name": written.name, "type": "file"}
    if written.metadata:
        entry["metadata"] = written.metadata
    return entry


class FileRoutes:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self):
        return [
            ("GET", "/files", self.download),
            ("POST", "/files", self.upload),
            ("POST", "/files/compose", self.compose),
        ]

    # --- shared steps -------------------------------------------------------------------------------

    def _expiration(self, request: Request) -> int | None:
        raw = request.query.get("signature_expiration")
        if raw is None:
            return None
        if not _INT64.fullmatch(raw):
            raise QueryFormatError(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
        value = int(raw)
        if not -(2**63) <= value < 2**63:
            raise QueryFormatError(f'strconv.ParseInt: parsing "{raw}": value out of range')
        return value

    def _authorize(self, request: Request, operation: str, expiration: int | None) -> None:
        """§2.6: the header token, else a signature over the raw query values."""
        if not self.state.token.is_set:
            return
        header = request.headers.get("x-access-token")
        if header:
            if not self.state.token.matches(header):
                raise HTTPError(401, "access token present in header but does not match")
            return
        try:
            check_signature(
                path=request.query.get("path", ""),
                operation=operation,
                username=request.query.get("username", ""),
                token=self.state.token.reveal(),
                signature=request.query.get("signature"),
                expiration=expiration,
            )
        except SignatureError as err:
            raise HTTPError(401, str(err)) from None

    def _username(self, explicit: str | None) -> str:
        """An explicit username wins even when empty; else the default user (§3.6 step 2)."""
        if explicit is not None:
            return explicit
        if not self.state.default_user:
            raise HTTPError(400, "username not provided")
        return self.state.default_user

    @staticmethod
    def _lookup(name: str) -> User:
        try:
            return lookup_user(name)
        except UnknownUser as err:
            raise HTTPError(401, f"error looking up user '{name}': {err}") from None

    def _resolve(self, raw: str, user: User) -> str:
        path = resolve_path(raw, user.home, user.name, self.state.default_workdir)
        if "\0" in path:
            raise PathError("path contains a NUL byte")
        return path

    # --- GET /files ----------------------------------------------------------------------------------

    async def download(self, request: Request, send: Send) -> None:
        try:
            expiration = self._expiration(request)
        except QueryFormatError as err:
            await send_text(send, 400, f"Invalid format for parameter signature_expiration: {err}\n")
            return
        self._authorize(request, "read", expiration)
        user = self._lookup(self._username(request.query.get("username")))
        raw_path = request.query.get("path", "")
        try:
            path = self._resolve(raw_path, user)
        except PathError as err:
            raise HTTPError(400, f"error expanding and resolving path '{raw_path}': {err}") from None
        try:
            st = await asyncio.to_thread(stat_for_download, path)
        except EnvdError as err:
            raise HTTPError(status_of(err), err.message) from None

        accept = request.headers.get("accept-encoding")
        try:
            coding = encoding.negotiate(accept)
        except encoding.NotAcceptable as err:
            raise HTTPError(406, f"error parsing Accept-Encoding: {err}") from None
        headers = [("vary", "Accept-Encoding")]
        if any(name in request.headers for name in CONDITIONAL_HEADERS):
            if encoding.identity_refused(accept):
                raise HTTPError(406, "identity encoding not acceptable for Range or conditional request")
            coding = encoding.IDENTITY

        regular = stat.S_ISREG(st.st_mode)
        if coding == encoding.GZIP and regular and st.st_size == 0 and not encoding.identity_refused(accept):
            # JS SDK reads an empty file as empty only with `Content-Length: 0` (sdk-expectations §3.3).
            coding = encoding.IDENTITY

        try:
            fd = await asyncio.to_thread(open_for_download, path)
        except EnvdError as err:
            raise HTTPError(status_of(err), err.message) from None
        try:
            headers.append(("content-disposition", encoding.content_disposition("inline", posixpath.basename(path))))

            def head() -> str:
                if not regular:
                    return content_type.OCTET_STREAM
                return content_type.sniff(os.pread(fd, 512, 0))

            body = FileBody(
                fd=fd,
                size=st.st_size if regular else None,
                mtime=int(st.st_mtime) if int(st.st_mtime) != 0 else None,
                head=head,
                content_type=content_type.by_extension(raw_path),
            )
            if coding == encoding.GZIP:
                await serve_gzip(send, request.receive, body, headers)
            else:
                try:
                    await serve_identity(send, request.receive, request.headers, body, headers)
                except RangeError as err:
                    await send_error(send, 416, err.message, headers=[*headers, *err.headers])
        finally:
            os.close(fd)

    # --- POST /files ---------------------------------------------------------------------------------

    async def upload(self, request: Request, send: Send) -> None:
        chunks = request.body_chunks()
        try:
            expiration = self._expiration(request)
        except QueryFormatError as err:
            await self._drain(chunks, UNAUTHENTICATED_DRAIN_BYTES)
            await send_text(send, 400, f"Invalid format for parameter signature_expiration: {err}\n")
            return
        try:
            self._authorize(request, "write", expiration)
        except HTTPError:
            await self._drain(chunks, UNAUTHENTICATED_DRAIN_BYTES)
            raise
        try:
            written = await self._receive_upload(request, chunks)
        except ClientDisconnected:
            return
        except HTTPError as err:
            # Read the rest of the body before answering: clients that send the whole request before
            # reading the response (httpx, undici) would otherwise see a broken pipe, not the error.
            await self._drain(chunks)
            await send_error(send, err.status, err.message)
            return
        await send_json(send, 200, [entry_json(w) for w in written])

    async def _receive_upload(self, request: Request, chunks) -> list[WrittenFile]:
        name = self._username(request.query.get("username"))

        try:
            gzipped = encoding.request_is_gzip(request.headers.get("content-encoding"))
        except encoding.UnsupportedEncoding as err:
            raise HTTPError(400, f"error decompressing request body: {err}") from None
        first = b""
        if gzipped:
            # Go's gzip.NewReader reads the header up front, so a non-gzip body fails at this step.
            first = await self._peek(chunks, 10)
            try:
                check_gzip_header(first)
            except GzipError as err:
                raise HTTPError(400, f"error decompressing request body: failed to create gzip reader: {err}") from None

        user = self._lookup(name)
        metadata = self._metadata(request)

        declared = request.headers.get("content-type")
        media_type = (declared or "").split(";", 1)[0].strip().lower()
        targets = UploadTargets(user, metadata, lambda raw: self._resolve(raw, user))
        if media_type == "application/octet-stream":
            raw_path = request.query.get("path")
            if raw_path is None:
                raise HTTPError(400, "path query parameter is required for raw body upload")
            try:
                self._resolve(raw_path, user)
            except PathError as err:
                raise HTTPError(400, f"error resolving path: {err}") from None
            sink = RawBody(targets, raw_path)
        elif media_type.startswith("multipart/"):
            sink = MultipartBody(self._boundary(declared or ""), targets, request.query.get("path"))
        else:
            raise HTTPError(
                400,
                f"unsupported content type: {declared or ''}, expected multipart/form-data or application/octet-stream",
            )
        if gzipped:
            sink = GunzipBody(sink)

        try:
            return await pump(chunks, sink, first)
        except EnvdError as err:
            message = err.message
            length = request.headers.get("content-length", "")
            if isinstance(err, DiskFull) and length.isdigit() and int(length) > 0:
                message = f"attempted to write {int(length)} bytes: {message}"
            raise HTTPError(status_of(err), message) from None

    @staticmethod
    def _boundary(content_type_header: str) -> str:
        try:
            kind, params = encoding.parse_header_params(content_type_header)
        except encoding.HeaderParamError as err:
            raise HTTPError(500, f"error parsing multipart form: mime: {err}") from None
        if kind not in ("multipart/form-data", "multipart/mixed"):
            raise HTTPError(500, "error parsing multipart form: request Content-Type isn't multipart/form-data")
        boundary = params.get("boundary")
        if not boundary:
            raise HTTPError(500, "error parsing multipart form: no multipart boundary param in Content-Type")
        if len(boundary) > 256:
            raise HTTPError(500, "error parsing multipart form: multipart boundary is longer than 256 bytes")
        return boundary

    @staticmethod
    def _metadata(request: Request) -> dict[str, str]:
        """§3.7 step 5: X-Metadata-<key> headers, key lower-cased, first value wins."""
        metadata: dict[str, str] = {}
        for name, value in request.header_items():
            if name.lower().startswith(METADATA_PREFIX):
                key = name[len(METADATA_PREFIX):].lower()
                if key:
                    metadata.setdefault(key, value)
        try:
            validate_metadata(metadata)
        except InvalidArgument as err:
            raise HTTPError(400, f"invalid metadata: {err.message}") from None
        return metadata

    @staticmethod
    async def _peek(chunks, size: int) -> bytes:
        head = b""
        while len(head) < size:
            try:
                head += await anext(chunks)
            except StopAsyncIteration:
                break
        return head

    @staticmethod
    async def _drain(chunks, limit: int | None = None) -> None:
        seen = 0
        try:
            async for chunk in chunks:
                seen += len(chunk)
                if limit is not None and seen > limit:
                    return
        except (ClientDisconnected, RuntimeError):
            pass  # RuntimeError: the generator already ran to its end or raised

    # --- POST /files/compose -------------------------------------------------------------------------

    async def compose(self, request: Request, send: Send) -> None:
        raw = b""
        async for chunk in request.body_chunks():
            raw += chunk
            if len(raw) > COMPOSE_BODY_LIMIT:
                raise HTTPError(400, f"invalid request body: larger than {COMPOSE_BODY_LIMIT} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise HTTPError(400, f"invalid request body: {err}") from None
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid request body: expected a JSON object")
        sources = body.get("source_paths")
        destination = body.get("destination")
        username = body.get("username")
        if sources is not None and not (isinstance(sources, list) and all(isinstance(s, str) for s in sources)):
            raise HTTPError(400, "invalid request body: source_paths must be an array of strings")
        if destination is not None and not isinstance(destination, str):
            raise HTTPError(400, "invalid request body: destination must be a string")
        if username is not None and not isinstance(username, str):
            raise HTTPError(400, "invalid request body: username must be a string")
        if not sources:
            raise HTTPError(400, "source_paths must not be empty")
        if not destination:
            raise HTTPError(400, "destination is required")

        user = self._lookup(self._username(username))
        try:
            dest_path = self._resolve(destination, user)
        except PathError as err:
            raise HTTPError(400, f"error resolving destination path: {err}") from None
        resolved = []
        for source in sources:
            try:
                resolved.append(Source(source, self._resolve(source, user)))
            except PathError as err:
                raise HTTPError(400, f'error resolving source path "{source}": {err}') from None
        try:
            written = await asyncio.to_thread(compose, resolved, dest_path, user.uid, user.gid)
        except EnvdError as err:
            raise HTTPError(status_of(err), err.message) from None
        await send_json(send, 200, entry_json(written))
