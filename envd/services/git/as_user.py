"""Running blocking git work as the request's user, in a thread of envd's own (root) process.

Why per-thread filesystem ids (setfsuid/setfsgid + the user's supplementary groups) rather than chown-after or
a helper process:
- chown after the fact is wrong for git: a pull or checkout rewrites files the user owns and must be refused
  where the user may not write; permission checks have to be the user's, during the operation.
- The filesystem uid decides both the owner of created files and every permission check; switching it from 0
  to the user's drops the file-related capabilities (DAC override, chown, fowner) for the thread (see
  capabilities(7)), so dulwich behaves exactly as if the user ran it. Unlike setresuid, the fs ids are per
  thread even through glibc (setfsuid is not one of its all-thread setxid calls); setgroups is issued as a raw
  syscall for the same reason (as the process service's spawner does).
- A helper process per call (or per user) would cost a fork/exec and serialisation of every result.
The threads belong to a pool used only for git, and each call restores root's ids before the thread is reused.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ...auth.users import User
from ...errors import Internal
from ..process.spawn import _ThreadCredentials, supplementary_groups

T = TypeVar("T")

MAX_THREADS = 4  # concurrent git operations; more queue (2-core VMs: the work is CPU and disk bound)


class _FsIds:
    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._creds = _ThreadCredentials()
        self._own_groups = os.getgroups()
        self.root = os.geteuid() == 0 and self._creds.available()

    def enter(self, user: User) -> None:
        self._creds.set_groups(supplementary_groups(user.name, user.gid))
        self._libc.setfsgid(user.gid)
        self._libc.setfsuid(user.uid)
        # setfs*id report no errors; asking again returns the id now in force.
        if self._libc.setfsuid(user.uid) != user.uid or self._libc.setfsgid(user.gid) != user.gid:
            self.leave()
            raise Internal(f"cannot switch to uid {user.uid} for a git operation")

    def leave(self) -> None:
        self._libc.setfsuid(os.geteuid())
        self._libc.setfsgid(os.getegid())
        self._creds.set_groups(self._own_groups)


class UserThreads:
    """Runs callables in git's own thread pool with the filesystem identity of a user."""

    def __init__(self, max_threads: int = MAX_THREADS, prepare: Callable[[], None] | None = None) -> None:
        # prepare: runs as root in each new pool thread before its first call (off the event loop: it may be slow).
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="envd-git", initializer=prepare)
        self._ids = _FsIds()

    def call(self, user: User, fn: Callable[..., T], *args: object) -> T:
        """Run fn(*args) in the calling thread as `user` (the caller is one of this pool's threads)."""
        switch = user.uid != os.geteuid() or user.gid != os.getegid()
        if not switch:
            return fn(*args)
        if not self._ids.root:
            raise Internal(f"cannot act as uid {user.uid}: envd is not root")
        self._ids.enter(user)
        try:
            return fn(*args)
        finally:
            self._ids.leave()

    def submit(self, user: User, fn: Callable[..., T], *args: object):
        return self._pool.submit(self.call, user, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
