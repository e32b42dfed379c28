"""File metadata as `user.e2b.<key>` extended attributes (spec/envd.md §3.7.3, §7.1 step 9)."""

from __future__ import annotations

import os

PREFIX = "user.e2b."


def read_metadata(path: str) -> dict[str, str]:
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
