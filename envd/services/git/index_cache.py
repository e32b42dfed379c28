"""Parsed indexes kept between Status calls, so a status of an unchanged index costs stats, not parsing.

Parsing a 10,000-entry index is dulwich's slowest step of a status (pure Python, per entry), and diffing it
against HEAD's tree the next; both results depend only on the index file and HEAD's tree. git and dulwich
replace the index by writing a lock file and renaming it, so (device, inode, size, mtime_ns) of the index file
changes whenever its content can; a snapshot is reused only while that key is unchanged.

A snapshot is taken out of the cache while a status uses it (a concurrent status of the same repository parses
its own), so no two threads share one.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_SNAPSHOTS = 4  # repositories; a 10,000-entry snapshot is a few MB


@dataclass
class Snapshot:
    key: tuple
    index: object  # dulwich.index.Index
    tracked: set[bytes] = field(default_factory=set)
    tracked_dirs: set[bytes] = field(default_factory=set)
    conflicts: list[str] = field(default_factory=list)
    # (fs path, (ctime_ns, mtime_ns, size), tree path, entry) of the plain entries, for the stat scan
    stat_table: list[tuple[bytes, tuple[int, int, int], bytes, object]] = field(default_factory=list)
    head_tree: bytes | None = None
    staged: dict | None = None  # HEAD tree -> index changes, valid for head_tree


def _key(index_path: str) -> tuple | None:
    try:
        st = os.stat(index_path)
    except FileNotFoundError:
        return None
    return (index_path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _ns(value) -> int:
    if isinstance(value, tuple):
        return value[0] * 1_000_000_000 + value[1]
    return int(value * 1_000_000_000)


def _build(repo, key: tuple | None) -> Snapshot:
    from dulwich.index import ConflictedIndexEntry

    index = repo.open_index()
    snap = Snapshot(key=key or (), index=index)
    root = os.fsencode(repo.path)
    for path, entry in index.items():
        snap.tracked.add(path)
        if isinstance(entry, ConflictedIndexEntry):
            snap.conflicts.append(path.decode("utf-8", "surrogateescape"))
        elif not entry.skip_worktree:
            expected = (_ns(entry.ctime), _ns(entry.mtime), entry.size)
            snap.stat_table.append((root + b"/" + path, expected, path, entry))
    for path in snap.tracked:
        cut = path.rfind(b"/")
        while cut > 0 and path[:cut] not in snap.tracked_dirs:
            snap.tracked_dirs.add(path[:cut])
            cut = path.rfind(b"/", 0, cut)
    snap.conflicts.sort()
    return snap


class IndexCache:
    def __init__(self, size: int = MAX_SNAPSHOTS) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[tuple, Snapshot] = OrderedDict()

    def take(self, repo) -> Snapshot:
        key = _key(repo.index_path())
        if key is not None:
            with self._lock:
                snap = self._snapshots.pop(key, None)
            if snap is not None:
                return snap
        return _build(repo, key)

    def give_back(self, snap: Snapshot) -> None:
        """Return a snapshot still describing the index file (not after the status rewrote the index)."""
        if not snap.key:
            return
        with self._lock:
            self._snapshots[snap.key] = snap
            while len(self._snapshots) > self._size:
                self._snapshots.popitem(last=False)


snapshots = IndexCache()
