"""Moving file contents in and out: writing one uploaded file, opening one for download (spec/envd.md §3.6, §3.7.4).

Everything here blocks; callers run it in worker threads. Errors are the protocol-agnostic ones of
envd.errors, with the messages the REST routes answer with.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from dataclasses import dataclass, field

from ...errors import Internal, InvalidArgument, NotFound, ResourceExhausted
from .metadata import read_metadata, replace_metadata
from .os_errors import errno_text, path_error
from .ownership import make_dirs_owned

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
IOV_MAX = os.sysconf("SC_IOV_MAX")


class DiskFull(ResourceExhausted):
    """Out of space while writing file data (the REST adapter may prefix the declared size)."""


@dataclass(frozen=True)
class WrittenFile:
    path: str
    name: str
    metadata: dict[str, str] = field(default_factory=dict)


def ensure_parent_dirs(path: str, uid: int, gid: int) -> None:
    """§3.7.4 step 1: `mkdir -p` of the parent, new directories owned by the user."""
    try:
        make_dirs_owned(posixpath.dirname(path), uid, gid)
    except Internal as err:
        raise Internal(f"error ensuring directories: {err.message}") from None
    except OSError as err:
        raise Internal(f"error ensuring directories: {path_error('mkdir', err.filename or path, err)}") from None


class FileUpload:
    """One file being written by an upload (§3.7.4): open() -> write()* -> commit(), or discard().

    A write that fails leaves no partial file behind: discard() removes what was opened.
    """

    def __init__(self, path: str, uid: int, gid: int, metadata: dict[str, str]) -> None:
        self.path = path
        self.uid = uid
        self.gid = gid
        self.metadata = metadata
        self._fd: int | None = None

    def open(self) -> None:
        ensure_parent_dirs(self.path, self.uid, self.gid)
        try:
            existing = os.stat(self.path)
        except FileNotFoundError:
            existing = None
        except OSError as err:
            raise Internal(f"error checking file: {path_error('stat', self.path, err)}") from None
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise InvalidArgument(f"path is a directory: {self.path}")
            # Ownership moves to the uploader before the old content is cut (step 3); the mode is kept.
            try:
                os.chown(self.path, self.uid, self.gid)
            except OSError as err:
                raise Internal(f"error changing file ownership: {path_error('chown', self.path, err)}") from None
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        except OSError as err:
            if err.errno in NO_SPACE:
                raise ResourceExhausted(f"not enough inodes available: {path_error('open', self.path, err)}") from None
            if err.errno == errno.EISDIR:
                raise InvalidArgument(f"path is a directory: {self.path}") from None
            raise Internal(f"error opening file: {path_error('open', self.path, err)}") from None
        if existing is None:
            try:
                os.fchown(self._fd, self.uid, self.gid)
            except OSError as err:
                self.discard()
                raise Internal(f"error changing file ownership: {path_error('fchown', self.path, err)}") from None

    def write(self, data: bytes | memoryview) -> None:
        self.write_parts([data])

    def write_parts(self, parts: list[bytes | memoryview]) -> None:
        """Write the parts in order with vectored writes: no joining copy of a batch."""
        assert self._fd is not None
        views = [memoryview(part) for part in parts if len(part)]
        try:
            while views:
                written = os.writev(self._fd, views[:IOV_MAX])
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if written:
                    views[0] = views[0][written:]
        except OSError as err:
            if err.errno in NO_SPACE:
                raise DiskFull("not enough disk space available") from None
            raise Internal(f"error writing file: {path_error('write', self.path, err)}") from None

    def commit(self) -> WrittenFile:
        assert self._fd is not None
        replace_metadata(self._fd, self.metadata)  # always, even an empty set clears old metadata (§3.7.3)
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError as err:
            # Some filesystems report a full disk only when the data is flushed at close.
            self._remove()
            if err.errno in NO_SPACE:
                raise DiskFull("not enough disk space available") from None
            raise Internal(f"error writing file: {path_error('close', self.path, err)}") from None
        return WrittenFile(self.path, posixpath.basename(self.path), read_metadata(self.path))

    def discard(self) -> None:
        """Close and remove the file, if this upload opened it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
        except OSError:
            pass
        self._remove()

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


# --- downloads --------------------------------------------------------------------------------------


def stat_for_download(path: str) -> os.stat_result:
    """§3.6 steps 5-6: follows symlinks; directories are refused, other non-regular files are served."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"path '{path}' does not exist") from None
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            raise NotFound(f"path '{path}' does not exist") from None
        raise Internal(f"error checking if path exists '{path}': {path_error('stat', path, err)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"path '{path}' is a directory")
    return st


def open_for_download(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise Internal(f"error opening file '{path}': {path_error('open', path, err)}") from None


class FileChunks:
    """Reads `length` bytes (None: to EOF) from `offset` in chunks; positional reads for regular files."""

    def __init__(self, fd: int, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20) -> None:
        self.fd = fd
        self.offset = offset
        self.remaining = length
        self.chunk_size = chunk_size
        self._positional = stat.S_ISREG(os.fstat(fd).st_mode)

    def read(self) -> bytes:
        size = self.chunk_size if self.remaining is None else min(self.chunk_size, self.remaining)
        if size <= 0:
            return b""
        try:
            data = os.pread(self.fd, size, self.offset) if self._positional else os.read(self.fd, size)
        except OSError as err:
            raise Internal(f"error reading file: {errno_text(err)}") from None
        self.offset += len(data)
        if self.remaining is not None:
            self.remaining -= len(data)
            if not data:
                raise Internal("file shrank while it was being read")
        return data
