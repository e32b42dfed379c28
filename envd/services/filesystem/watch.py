"""Directory watches on raw inotify (spec/envd.md §7.7): the delicate part of the filesystem service.

Why not watchfiles: it reports debounced, coalesced sets of added/modified/deleted paths, so it cannot
express RENAME or CHMOD, nor "one event per operation, within milliseconds" which the SDKs expect (an
upload must read CREATE, CHMOD, WRITE). inotify_simple is a thin wrapper over the syscalls; the fd is
non-blocking and the asyncio side waits on it with `loop.add_reader`.

Two layers:
- `DirWatch`: synchronous; owns one inotify instance, the watch-descriptor map, recursion and the
  translation of kernel events into `WatchEvent`s. Its `read()` never blocks on the fd.
- `AsyncDirWatch`: waits for readability on the event loop and runs `read()` in a worker thread
  (it may stat entries and walk new directories), never closing the fd under a running read.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import os
import posixpath
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass

from inotify_simple import INotify, flags, parse_events

from ...errors import EnvdError, Internal, InvalidArgument, NotFound
from ...host.statfs import fs_magic
from .entry_info import EntryInfo, entry_info
from .os_errors import errno_text, path_error


class EventType(enum.IntEnum):
    # Same numbers as filesystem.EventType.
    CREATE = 1
    WRITE = 2
    REMOVE = 3
    RENAME = 4
    CHMOD = 5


@dataclass(frozen=True)
class WatchEvent:
    name: str  # relative to the watched directory; "." for the directory itself (§7.7 step 6)
    type: EventType
    entry: EntryInfo | None = None


WATCH_MASK = (
    flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.MOVE_SELF
    | flags.ATTRIB | flags.MODIFY | flags.DELETE | flags.DELETE_SELF
)

# §7.7 step 5: one event per operation carried, in this order.
_OPERATIONS = (
    (flags.CREATE | flags.MOVED_TO, EventType.CREATE),
    (flags.MOVED_FROM | flags.MOVE_SELF, EventType.RENAME),
    (flags.ATTRIB, EventType.CHMOD),
    (flags.MODIFY, EventType.WRITE),
    (flags.DELETE | flags.DELETE_SELF, EventType.REMOVE),
)
_WITH_ENTRY = {EventType.CREATE, EventType.WRITE, EventType.CHMOD}  # §7.7 step 7

# §7.7 step 2: statfs magic numbers of network (and FUSE) filesystems.
NETWORK_FS_MAGIC = {
    0x6969: "nfs",
    0xFF534D42: "cifs",
    0x517B: "smb",
    0xFE534D42: "smb2",
    0x65735546: "fuse",
}

OVERFLOW_MESSAGE = "watcher error: fsnotify: queue or buffer overflow"

_READ_SIZE = 64 * 1024
_MAX_READS = 16  # per read() call, so a busy writer cannot keep one call going forever


class WatchFailed(Internal):
    """The watch broke (queue overflow, watch limit); the stream or watcher reports it and stops."""


def check_watchable(path: str, allow_network_mounts: bool) -> None:
    """§7.7 steps 1-2: an existing directory, not on a network filesystem unless allowed."""
    try:
        st = os.stat(path)
    except FileNotFoundError as err:
        raise NotFound(f"path {path} not found: {path_error('stat', path, err)}") from None
    except OSError as err:
        raise Internal(f"error statting path {path}: {path_error('stat', path, err)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"path {path} not a directory: {path} is not a directory")
    if allow_network_mounts:
        return
    try:
        magic = fs_magic(path)
    except OSError as err:
        raise Internal(f"error checking filesystem of {path}: {path_error('statfs', path, err)}") from None
    if magic in NETWORK_FS_MAGIC:
        raise InvalidArgument(f"cannot watch path on network filesystem: {path}")


class DirWatch:
    """An inotify watch on `root` (and, if recursive, every directory below it, also ones added later)."""

    def __init__(self, root: str, *, recursive: bool, include_entry: bool) -> None:
        self.root = root
        self.recursive = recursive
        self.include_entry = include_entry
        self._inotify = INotify(nonblocking=True)
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory relative to root ("" = root)
        self._root_wd = -1
        self._error: WatchFailed | None = None
        self._moved_away: dict[int, str] = {}  # rename cookie -> directory moved from (awaiting its MOVED_TO)

    @classmethod
    def open(cls, root: str, *, recursive: bool, include_entry: bool, allow_network_mounts: bool) -> DirWatch:
        """Validate and set up the watch (§7.7 steps 1-3); NotFound/InvalidArgument/Internal otherwise."""
        check_watchable(root, allow_network_mounts)
        try:
            watch = cls(root, recursive=recursive, include_entry=include_entry)
        except OSError as err:  # e.g. EMFILE: too many inotify instances
            raise Internal(f"error creating watcher: {errno_text(err)}") from None
        try:
            watch._root_wd = watch._add(root, "", follow=True)
            if recursive:
                watch._add_subdirs(root, "")
        except OSError as err:
            watch.close()
            raise Internal(f"error adding path {err.filename or root} to watcher: {errno_text(err)}") from None
        return watch

    def fileno(self) -> int:
        return self._inotify.fileno()

    @property
    def closed(self) -> bool:
        return self._inotify.closed

    def close(self) -> None:
        self._inotify.close()

    def read(self) -> list[WatchEvent]:
        """Translate every pending kernel event; [] when none. Raises WatchFailed once broken, and after."""
        if self._error is not None:
            raise self._error
        events: list[WatchEvent] = []
        for _ in range(_MAX_READS):
            try:
                data = os.read(self.fileno(), _READ_SIZE)
            except BlockingIOError:
                break
            for raw in parse_events(data):
                self._translate(raw, events)
        self._forget_moved_away()
        return events

    # -- watch descriptors -------------------------------------------------------------------------

    def _add(self, path: str, rel: str, *, follow: bool) -> int:
        mask = WATCH_MASK | flags.ONLYDIR | (0 if follow else flags.DONT_FOLLOW)
        try:
            wd = self._inotify.add_watch(path, mask)
        except OSError as err:
            raise OSError(err.errno, err.strerror, path) from None  # name the directory in the message
        self._dirs[wd] = rel
        return wd

    def _add_subdirs(self, path: str, rel: str) -> None:
        """Watch every directory below `path` (links not followed). Vanished entries are skipped."""
        stack = [(path, rel)]
        while stack:
            directory, directory_rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    subdirs = [entry.name for entry in it if entry.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # removed or replaced meanwhile
            for name in subdirs:
                child = posixpath.join(directory, name)
                child_rel = posixpath.join(directory_rel, name) if directory_rel else name
                try:
                    self._add(child, child_rel, follow=False)
                except OSError as err:
                    if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue
                    raise
                stack.append((child, child_rel))

    def _watch_new_dir(self, rel: str) -> None:
        path = posixpath.join(self.root, rel)
        try:
            self._add(path, rel, follow=False)
            self._add_subdirs(path, rel)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return  # gone again before we got to it
            self._error = WatchFailed(f"watcher error: error adding path {err.filename or path}: {errno_text(err)}")
            raise self._error from None

    def _rename_tree(self, old: str, new: str) -> None:
        """A directory moved within the tree keeps its watches (inotify follows inodes); rename them."""
        prefix = old + "/"
        for wd, directory in self._dirs.items():
            if directory == old:
                self._dirs[wd] = new
            elif directory.startswith(prefix):
                self._dirs[wd] = new + directory[len(old):]

    def _forget_moved_away(self) -> None:
        for rel in self._moved_away.values():
            self._forget_tree(rel)
        self._moved_away.clear()

    def _forget_tree(self, rel: str) -> None:
        """A directory moved out of the tree: drop its watches."""
        prefix = rel + "/"
        for wd, directory in list(self._dirs.items()):
            if directory == rel or directory.startswith(prefix):
                del self._dirs[wd]
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass  # already gone (its IN_IGNORED is then ignored)

    # -- translation -------------------------------------------------------------------------------

    def _translate(self, raw, events: list[WatchEvent]) -> None:
        mask = raw.mask
        if mask & flags.Q_OVERFLOW:
            self._error = WatchFailed(OVERFLOW_MESSAGE)
            raise self._error
        if mask & flags.IGNORED:
            self._dirs.pop(raw.wd, None)
            return
        if self._moved_away and not (mask & flags.MOVED_TO and raw.cookie in self._moved_away):
            # The kernel queues a rename's MOVED_TO right after its MOVED_FROM; anything else in
            # between means the directory left the tree.
            self._forget_moved_away()
        directory = self._dirs.get(raw.wd)
        if directory is None:
            return  # a watch already forgotten
        if raw.name:
            rel = posixpath.join(directory, raw.name) if directory else raw.name
        elif raw.wd == self._root_wd:
            rel = ""
        else:
            # Events about a subdirectory itself repeat what its parent's watch reports by name.
            return
        if self.recursive and raw.name and mask & flags.ISDIR:
            if mask & flags.MOVED_FROM:
                self._moved_away[raw.cookie] = rel
            elif mask & flags.MOVED_TO and raw.cookie in self._moved_away:
                self._rename_tree(self._moved_away.pop(raw.cookie), rel)
            elif mask & (flags.CREATE | flags.MOVED_TO):
                self._watch_new_dir(rel)

        name = rel or "."
        path = posixpath.join(self.root, rel) if rel else self.root
        for bits, kind in _OPERATIONS:
            if mask & bits:
                events.append(WatchEvent(name, kind, self._entry(path) if kind in _WITH_ENTRY else None))

    def _entry(self, path: str) -> EntryInfo | None:
        if not self.include_entry:
            return None
        try:
            return entry_info(path)
        except EnvdError:
            return None  # no longer stat-able (§7.7 step 7)


class AsyncDirWatch:
    """A DirWatch driven from asyncio: wait on the fd in the loop, read in a thread."""

    def __init__(self, watch: DirWatch) -> None:
        self._watch = watch
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future | None = None

    @classmethod
    async def open(
        cls, root: str, *, recursive: bool, include_entry: bool, allow_network_mounts: bool
    ) -> AsyncDirWatch:
        watch = await asyncio.to_thread(
            DirWatch.open,
            root,
            recursive=recursive,
            include_entry=include_entry,
            allow_network_mounts=allow_network_mounts,
        )
        return cls(watch)

    async def wait_readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        fd = self._watch.fileno()
        loop.add_reader(fd, on_readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    async def read(self) -> list[WatchEvent]:
        """Everything pending right now (possibly []). Reads are serialized; WatchFailed when broken."""
        async with self._lock:
            if self._watch.closed:
                return []
            loop = asyncio.get_running_loop()
            self._inflight = loop.run_in_executor(None, self._watch.read)
            # Shielded: a cancelled caller must not let close() shut the fd under the running thread.
            return await asyncio.shield(self._inflight)

    async def events(self) -> AsyncIterator[WatchEvent]:
        while True:
            await self.wait_readable()
            for event in await self.read():
                yield event

    async def close(self) -> None:
        inflight = self._inflight
        if inflight is not None and not inflight.done():
            await asyncio.wait({inflight})
        if inflight is not None and inflight.done() and not inflight.cancelled():
            inflight.exception()  # retrieved, so a failure nobody awaited is not logged as lost
        self._watch.close()
