"""Filesystem freeze/thaw with FIFREEZE/FITHAW (spec/envd.md §3.9), behind a tiny interface chosen at start-up.

In the VM the target is `/`. A local run (-isnotfc) never freezes the machine it runs on: there the no-op
is used unless a target is configured explicitly (-fsfreeze-path; the tests use a loop-mounted image).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from typing import Protocol

from ..errors import Internal
from .locks import acquire_unless

log = logging.getLogger("envd")

# linux/fs.h: _IOWR('X', 119, int) and _IOWR('X', 120, int)
FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


class FilesystemFreezer(Protocol):
    async def freeze(self, cancelled: asyncio.Event | None = None) -> None: ...

    async def thaw(self) -> None: ...


def _ioctl(path: str, request: int, tolerated: int) -> bool:
    """Run the ioctl on the mount point; False when it failed with the tolerated errno (already in that state)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, 0)
    except OSError as err:
        if err.errno == tolerated:
            return False
        raise
    finally:
        os.close(fd)
    return True


class Fsfreeze:
    """FIFREEZE/FITHAW on one mount point; both serialise on one lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def freeze(self, cancelled: asyncio.Event | None = None) -> None:
        """Already frozen (EBUSY) counts as success. Raises Canceled if `cancelled` is set before the lock is had."""
        await acquire_unless(self._lock, cancelled, "filesystem freeze lock")
        try:
            # The ioctl flushes dirty data first (seconds on a busy disk): a worker thread, never abandoned.
            changed = await asyncio.shield(asyncio.to_thread(self._ioctl, FIFREEZE, errno.EBUSY))
            log.info("filesystem %s %s", self.path, "frozen" if changed else "already frozen")
        finally:
            self._lock.release()

    async def thaw(self) -> None:
        """Not frozen (EINVAL) counts as success. Always waits for the lock."""
        async with self._lock:
            changed = await asyncio.shield(asyncio.to_thread(self._ioctl, FITHAW, errno.EINVAL))
            log.info("filesystem %s %s", self.path, "thawed" if changed else "was not frozen")

    def _ioctl(self, request: int, tolerated: int) -> bool:
        try:
            return _ioctl(self.path, request, tolerated)
        except OSError as err:
            name = "FIFREEZE" if request == FIFREEZE else "FITHAW"
            raise Internal(f"{name} on {self.path}: {os.strerror(err.errno or 0)}") from err


class NoFsfreeze:
    """Local mode without a configured target: answers success, touches nothing (logged once)."""

    def __init__(self) -> None:
        self._told = False

    def _tell(self) -> None:
        if not self._told:
            self._told = True
            log.info("fsfreeze/fsthaw are no-ops in local mode without -fsfreeze-path")

    async def freeze(self, cancelled: asyncio.Event | None = None) -> None:
        self._tell()

    async def thaw(self) -> None:
        self._tell()
