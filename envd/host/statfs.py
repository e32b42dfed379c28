"""statfs(2) filesystem magic numbers (f_type), which os.statvfs does not expose."""

from __future__ import annotations

import ctypes
import os

CGROUP2_SUPER_MAGIC = 0x63677270  # §8.9

_libc = ctypes.CDLL(None, use_errno=True)


def fs_magic(path: str) -> int:
    """statfs(2) f_type. `struct statfs` starts with f_type (a C long)."""
    buf = ctypes.create_string_buffer(256)  # sizeof(struct statfs) is 120 on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buf) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
