"""File metadata as `user.e2b.<key>` extended attributes (spec/envd.md §3.7.3, §7.1 step 9)."""

from __future__ import annotations

import errno
import logging
import os

from ...errors import Internal, InvalidArgument, ResourceExhausted

log = logging.getLogger("envd")

PREFIX = "user.e2b."
MAX_KEY_BYTES = 255 - len(PREFIX)  # 246: the xattr name limit minus the prefix
MAX_TOTAL_BYTES = 4096

_NOT_SUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def read_metadata(path: str | int) -> dict[str, str]:
    """Every user.e2b.* attribute (following symlinks); never raises: no support -> {}."""
    try:
        names = os.listxattr(path)
    except OSError:
        return {}
    result: dict[str, str] = {}
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            result[name[len(PREFIX):]] = os.getxattr(path, name).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return result


def _check_printable(what: str, text: str) -> None:
    for offset, ch in enumerate(text):
        if not 0x20 <= ord(ch) <= 0x7E:
            raise InvalidArgument(
                f"{what} contains byte 0x{ord(ch):02x} at offset {offset}; only printable ASCII (0x20-0x7e) is allowed"
            )


def validate_metadata(metadata: dict[str, str]) -> None:
    """§3.7.3 limits; InvalidArgument naming the offending key or byte."""
    total = 0
    for key, value in metadata.items():
        if not key:
            raise InvalidArgument("metadata key must not be empty")
        _check_printable(f"metadata key {key!r}", key)
        _check_printable(f"value of metadata key {key!r}", value)
        if len(key) > MAX_KEY_BYTES:
            raise InvalidArgument(f"metadata key {key[:32]!r}... is {len(key)} bytes, the limit is {MAX_KEY_BYTES}")
        total += len(PREFIX) + len(key) + len(value)
    if total > MAX_TOTAL_BYTES:
        raise InvalidArgument(f"metadata is {total} bytes in total, the limit is {MAX_TOTAL_BYTES}")


def replace_metadata(target: str | int, metadata: dict[str, str]) -> bool:
    """Make the user.e2b.* set of `target` (path or fd) exactly `metadata`; other xattrs are untouched.

    Returns False when the filesystem has no xattr support (metadata silently dropped, §3.7.3).
    Raises ResourceExhausted (-> 507) when out of space, Internal for other xattr errors.
    """
    try:
        existing = [name for name in os.listxattr(target) if name.startswith(PREFIX)]
        for name in existing:
            if name[len(PREFIX):] not in metadata:
                os.removexattr(target, name)
        for key, value in metadata.items():
            os.setxattr(target, PREFIX + key, value.encode("ascii"))
    except OSError as err:
        if err.errno in _NOT_SUPPORTED:
            if metadata:
                log.info("metadata dropped: the filesystem does not support extended attributes")
            return False
        if err.errno in _NO_SPACE:
            raise ResourceExhausted(f"not enough space for file metadata: {err.strerror}") from err
        raise Internal(f"error writing file metadata: {err.strerror}") from err
    return True
