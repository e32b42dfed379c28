"""Filesystem service core: Stat, ListDir, MakeDir, Move, Remove (spec/envd.md §7.2-7.6).

Plain synchronous functions on already-resolved absolute paths; they raise envd.errors and know
nothing of RPC. The adapter runs them in threads. Operations act as root (Q8); only ownership of
newly created directories follows the user.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import posixpath
import shutil
import stat as stat_mode
from collections.abc import Iterator

from ...errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound
from .entry_info import EntryInfo, entry_info
from .os_errors import link_error, path_error
from .ownership import make_dirs_owned


def stat(path: str) -> EntryInfo:
    return entry_info(path)


def list_dir(requested: str, depth: int) -> list[EntryInfo]:
    """Entries below `requested` up to `depth` levels, pre-order, byte-wise sorted (§7.3)."""
    depth = depth or 1
    try:
        real = os.path.realpath(requested, strict=True)
    except FileNotFoundError as err:
        raise NotFound(f"path not found: {path_error('lstat', err.filename or requested, err)}") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FailedPrecondition(f'cyclic symlink or chain >255 links at "{requested}"') from None
        raise Internal(f"error resolving path: {path_error('lstat', err.filename or requested, err)}") from None

    try:
        st = os.stat(real)
    except FileNotFoundError as err:
        raise NotFound(f"directory not found: {path_error('stat', real, err)}") from None
    except OSError as err:
        raise Internal(f"error getting file info: {path_error('stat', real, err)}") from None
    if not stat_mode.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"path is not a directory: {real}")

    entries: list[EntryInfo] = []
    # A stack of sorted-child iterators gives pre-order without recursion limits on deep trees.
    stack: list[tuple[Iterator[tuple[str, bool]], str, str, int]] = [(_children(real, real, root=True), real, "", 1)]
    while stack:
        children, dir_real, dir_rel, level = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        name, is_dir = child
        real_path = posixpath.join(dir_real, name)
        rel_path = posixpath.join(dir_rel, name) if dir_rel else name
        try:
            info = entry_info(real_path)
        except NotFound:
            continue  # vanished meanwhile (§7.3 step 5)
        # Paths are shown under the requested path, e.g. through a symlinked directory.
        entries.append(dataclasses.replace(info, path=posixpath.normpath(posixpath.join(requested, rel_path))))
        if is_dir and level < depth:
            stack.append((_children(real_path, real, root=False), real_path, rel_path, level + 1))
    return entries


def _children(directory: str, listed_root: str, *, root: bool) -> Iterator[tuple[str, bool]]:
    """(name, is a real directory) of each entry, in byte-wise lexical order; links are not followed."""
    try:
        with os.scandir(directory) as it:
            found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in it]
    except FileNotFoundError as err:
        if not root:
            return iter(())  # a subdirectory removed while walking
        raise Internal(f"error reading directory {listed_root}: {path_error('open', directory, err)}") from None
    except OSError as err:
        raise Internal(f"error reading directory {listed_root}: {path_error('open', directory, err)}") from None
    found.sort(key=lambda item: os.fsencode(item[0]))
    return iter(found)


def make_dir(path: str, uid: int, gid: int) -> EntryInfo:
    """`mkdir -p` with each new directory owned by the user (§7.4)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # missing, or a file in the way, which make_dirs_owned reports by name
    except OSError as err:
        raise Internal(f"error getting file info: {path_error('stat', path, err)}") from None
    else:
        if stat_mode.S_ISDIR(st.st_mode):
            raise AlreadyExists(f"directory already exists: {path}")
        raise InvalidArgument(f"path already exists but it is not a directory: {path}")
    _make_parents(path, uid, gid)
    return entry_info(path)


def _make_parents(path: str, uid: int, gid: int) -> None:
    try:
        make_dirs_owned(path, uid, gid)
    except OSError as err:
        raise Internal(f"error creating directory: {path_error('mkdir', err.filename or path, err)}") from None


def move(source: str, destination: str, uid: int, gid: int) -> EntryInfo:
    """rename(2) source -> destination, creating the destination's parents first (§7.5)."""
    try:
        os.lstat(source)
    except FileNotFoundError as err:
        # Checked before creating the destination's parents, so a failed move leaves nothing behind.
        raise NotFound(f"source file not found: {path_error('lstat', source, err)}") from None
    except OSError as err:
        raise Internal(f"error getting source file info: {path_error('lstat', source, err)}") from None
    _make_parents(posixpath.dirname(destination), uid, gid)
    try:
        os.rename(source, destination)
    except FileNotFoundError as err:
        raise NotFound(f"source file not found: {link_error('rename', source, destination, err)}") from None
    except OSError as err:
        # No copy fallback across filesystems (EXDEV), as upstream.
        raise Internal(f"error renaming: {link_error('rename', source, destination, err)}") from None
    return entry_info(destination)


def remove(path: str) -> None:
    """`rm -rf`: a missing path is success (Q10); a symlink is removed itself (§7.6)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise Internal(f"error removing file or directory: {path_error('lstat', path, err)}") from None
    try:
        if stat_mode.S_ISDIR(st.st_mode):
            shutil.rmtree(path, onerror=_ignore_vanished)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise Internal(f"error removing file or directory: {path_error('unlinkat', err.filename or path, err)}") from None


def _ignore_vanished(_func, _path, exc_info) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]
