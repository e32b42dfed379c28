"""Path resolution shared by REST and RPC (spec/envd.md §5)."""

from __future__ import annotations

import posixpath


class PathError(ValueError):
    pass


def resolve_path(raw: str, home: str, username: str, default_workdir: str | None) -> str:
    path = raw or (default_workdir or "")
    if path.startswith("~"):
        rest = path[1:]
        if rest and rest[0] not in "/\\":
            raise PathError(
                f"failed to expand path '{raw}' for user '{username}': cannot expand user-specific home dir"
            )
        return posixpath.normpath(posixpath.join(home, rest.lstrip("/\\")))
    if posixpath.isabs(path):
        # Absolute paths are returned unchanged, not cleaned (§5 step 3).
        return path
    return posixpath.normpath(posixpath.join(home, path))
