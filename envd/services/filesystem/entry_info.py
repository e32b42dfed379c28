"""What the filesystem service says about one path: EntryInfo of spec/envd.md §7.1, as a plain value.

No protobuf here; the RPC adapter converts. Everything is computed from lstat (the link itself), except
`type`/`mode`, which describe a symlink's target, so FILE_TYPE_SYMLINK is never produced (§11 item 9).
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...auth.users import group_name, user_name
from ...errors import Internal, NotFound
from .metadata import read_metadata
from .os_errors import path_error


class FileType(enum.IntEnum):
    # Same numbers as filesystem.FileType; SYMLINK (3) deliberately absent (§7.1 step 3).
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2


@dataclass(frozen=True)
class EntryInfo:
    name: str
    type: FileType
    path: str
    size: int
    mode: int  # permission bits only (& 0o777)
    permissions: str  # Go FileMode.String() of the lstat mode
    owner: str
    group: str
    modified_ns: int  # lstat mtime in ns since the epoch; 0 = unset (omitted on the wire)
    symlink_target: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def base_name(path: str) -> str:
    """Go's filepath.Base: last element, trailing slashes ignored, `/` for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def file_type(mode: int) -> FileType:
    if stat.S_ISREG(mode):
        return FileType.FILE
    if stat.S_ISDIR(mode):
        return FileType.DIRECTORY
    return FileType.UNSPECIFIED


# Go's FileMode letters in their fixed order (`dalTLDpSugct?`); a, l, T, ? never occur on Linux.
def _mode_letters(mode: int) -> str:
    letters = ""
    if stat.S_ISDIR(mode):
        letters += "d"
    if stat.S_ISLNK(mode):
        letters += "L"
    if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
        letters += "D"  # Go sets ModeDevice for both; char devices add ModeCharDevice (`c`) below
    if stat.S_ISFIFO(mode):
        letters += "p"
    if stat.S_ISSOCK(mode):
        letters += "S"
    if mode & stat.S_ISUID:
        letters += "u"
    if mode & stat.S_ISGID:
        letters += "g"
    if stat.S_ISCHR(mode):
        letters += "c"
    if mode & stat.S_ISVTX:
        letters += "t"
    return letters


def permissions_string(mode: int) -> str:
    """`-rw-r--r--`, `drwxr-xr-x`, `Lrwxrwxrwx`, `dtrwxrwxrwx`, `Dcrw-rw-rw-` ... (§7.1)."""
    rwx = "".join(ch if mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx"))
    return (_mode_letters(mode) or "-") + rwx


def resolve_symlinks(path: str) -> str | None:
    """The path with every symlink resolved (realpath), or None when dangling or looping."""
    try:
        return os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):
        return None


def entry_info(path: str) -> EntryInfo:
    """EntryInfo of `path`; NotFound when it does not exist, Internal on other lstat errors."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as err:
        raise NotFound(f"file not found: {path_error('lstat', path, err)}") from None
    except OSError as err:
        raise Internal(f"error getting file info: {path_error('lstat', path, err)}") from None

    symlink_target = None
    if stat.S_ISLNK(st.st_mode):
        # §7.1 step 3: target fully resolved, P itself when that fails; type/mode from the target.
        symlink_target = resolve_symlinks(path) or path
        try:
            target = os.stat(path)
            kind, mode = file_type(target.st_mode), target.st_mode & 0o777
        except OSError:
            kind, mode = FileType.UNSPECIFIED, 0
    else:
        kind, mode = file_type(st.st_mode), st.st_mode & 0o777

    return EntryInfo(
        name=base_name(path),
        type=kind,
        path=path,
        size=st.st_size,
        mode=mode,
        permissions=permissions_string(st.st_mode),
        owner=user_name(st.st_uid),
        group=group_name(st.st_gid),
        modified_ns=st.st_mtime_ns,
        symlink_target=symlink_target,
        metadata=read_metadata(path),
    )
