"""Creating directories and files on a user's behalf: envd runs as root, the user owns what it makes."""

from __future__ import annotations

import os

from ...errors import Internal


def make_dirs_owned(path: str, uid: int, gid: int, mode: int = 0o755) -> None:
    """`mkdir -p` walking from `/`: each missing directory is created and chowned to uid/gid.

    Existing directories are left alone; concurrent creators of the same directory both succeed;
    an existing non-directory component raises Internal("path is a file: <component>").
    """
    current = "/"
    for part in [p for p in path.split("/") if p]:
        current = os.path.join(current, part)
        try:
            os.mkdir(current, mode)
        except FileExistsError:
            if not os.path.isdir(current):
                raise Internal(f"path is a file: {current}") from None
            continue
        except NotADirectoryError:
            raise Internal(f"path is a file: {os.path.dirname(current)}") from None
        os.chown(current, uid, gid)
