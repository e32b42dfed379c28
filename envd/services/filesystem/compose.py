"""Concatenating files into one and deleting the sources (spec/envd.md §3.8). Blocking; run in a thread."""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import uuid
from dataclasses import dataclass

from ...errors import Internal, InvalidArgument, NotFound
from .os_errors import path_error
from .transfer import NO_SPACE, DiskFull, WrittenFile, ensure_parent_dirs

_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF})


@dataclass(frozen=True)
class Source:
    raw: str  # as the client sent it: error messages quote it
    path: str


def check_sources(sources: list[Source], destination: str) -> None:
    """Per source, in order: not the destination, exists (following symlinks), a regular file."""
    dest_real = os.path.realpath(destination)
    for source in sources:
        # realpath: `/a/./x` or a symlinked directory must not pass for another file, else the
        # "delete the sources" step would delete the result.
        if os.path.realpath(source.path) == dest_real:
            raise InvalidArgument(f'source path "{source.raw}" cannot be the same as destination')
        try:
            st = os.stat(source.path)
        except OSError:
            raise NotFound(f"source file not found: {source.raw}") from None
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"source path is not a regular file: {source.raw}")


def compose(sources: list[Source], destination: str, uid: int, gid: int) -> WrittenFile:
    check_sources(sources, destination)
    ensure_parent_dirs(destination, uid, gid)
    temp = f"{destination}.e2b-compose.{uuid.uuid4()}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise _copy_error(err, "open", temp) from None
    try:
        try:
            os.fchown(fd, uid, gid)
            for source in sources:
                _append(fd, source.path)
        finally:
            os.close(fd)
        os.rename(temp, destination)
    except BaseException as err:
        try:
            os.unlink(temp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise _copy_error(err, "compose", destination) from None
        raise
    for source in sources:
        try:
            os.unlink(source.path)
        except OSError:
            pass
    return WrittenFile(destination, posixpath.basename(destination))


def _copy_error(err: OSError, op: str, path: str) -> Exception:
    if err.errno in NO_SPACE:
        return DiskFull("not enough disk space available")
    return Internal(f"error composing files: {path_error(op, err.filename or path, err)}")


def _append(out_fd: int, path: str) -> None:
    """Append a whole file to out_fd, copied in the kernel when the filesystems allow it."""
    in_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            while os.copy_file_range(in_fd, out_fd, 1 << 30):
                pass
            return
        except OSError as err:
            if err.errno not in _NO_KERNEL_COPY:
                raise
        try:
            while os.sendfile(out_fd, in_fd, None, 1 << 30):
                pass
            return
        except OSError as err:
            if err.errno not in _NO_KERNEL_COPY:
                raise
        while chunk := os.read(in_fd, 1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(out_fd, view):]
    finally:
        os.close(in_fd)
