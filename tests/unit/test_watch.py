"""Directory watches (spec/envd.md §7.7, §7.8) on real inotify: event mapping, recursion, overflow, asyncio."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from envd.errors import Internal, InvalidArgument, NotFound
from envd.services.filesystem.watch import (
    NETWORK_FS_MAGIC,
    OVERFLOW_MESSAGE,
    AsyncDirWatch,
    DirWatch,
    EventType,
    WatchFailed,
    check_watchable,
    fs_magic,
)
from envd.services.filesystem.watchers import Watchers, new_watcher_id

CREATE, WRITE, REMOVE, RENAME, CHMOD = (
    EventType.CREATE, EventType.WRITE, EventType.REMOVE, EventType.RENAME, EventType.CHMOD
)


def open_watch(path: Path, recursive: bool = False, include_entry: bool = False) -> DirWatch:
    return DirWatch.open(str(path), recursive=recursive, include_entry=include_entry, allow_network_mounts=False)


def pairs(events) -> list[tuple[str, EventType]]:
    return [(event.name, event.type) for event in events]


@pytest.fixture
def watched(tmp_path: Path):
    root = tmp_path / "w"
    root.mkdir()
    watches: list[DirWatch] = []

    def make(**kwargs) -> DirWatch:
        watch = open_watch(root, **kwargs)
        watches.append(watch)
        return watch

    yield root, make
    for watch in watches:
        watch.close()


def upload_like(path: Path, data: bytes = b"hello") -> None:
    """What POST /files does for a new file: create, chown to the user, write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fchown(fd, 1001, 1001)
        os.write(fd, data)
    finally:
        os.close(fd)


# -- validation --------------------------------------------------------------------------------------


def test_missing_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        open_watch(tmp_path / "missing")
    assert err.value.message.startswith(f"path {tmp_path}/missing not found: ")


def test_regular_file_is_invalid_argument(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidArgument) as err:
        open_watch(tmp_path / "f")
    assert err.value.message.startswith(f"path {tmp_path}/f not a directory")


def test_statfs_magic_is_read_correctly() -> None:
    assert fs_magic("/proc") == 0x9FA0  # PROC_SUPER_MAGIC
    assert fs_magic("/sys") == 0x62656572  # SYSFS_MAGIC
    assert 0x6969 in NETWORK_FS_MAGIC and 0xFF534D42 in NETWORK_FS_MAGIC and 0x65735546 in NETWORK_FS_MAGIC
    check_watchable("/proc", allow_network_mounts=False)  # local pseudo filesystems are fine


def test_watch_through_symlink_to_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    watch = open_watch(tmp_path / "alias")
    try:
        (tmp_path / "real" / "f").write_text("x")
        assert pairs(watch.read()) == [("f", CREATE), ("f", WRITE)]
    finally:
        watch.close()


# -- event mapping -----------------------------------------------------------------------------------


def test_upload_of_new_file_yields_create_chmod_write(watched) -> None:
    root, make = watched
    watch = make()
    upload_like(root / "up.txt")
    assert pairs(watch.read()) == [("up.txt", CREATE), ("up.txt", CHMOD), ("up.txt", WRITE)]


def test_nothing_pending_reads_empty(watched) -> None:
    _root, make = watched
    assert make().read() == []


def test_every_write_is_an_event_when_read_between_writes(watched) -> None:
    root, make = watched
    watch = make()
    with open(root / "f", "wb", buffering=0) as f:
        assert pairs(watch.read()) == [("f", CREATE)]
        for _ in range(3):
            f.write(b"x")
            assert pairs(watch.read()) == [("f", WRITE)]


def test_chmod_rename_remove(watched) -> None:
    root, make = watched
    (root / "a").write_text("")
    watch = make()
    os.chmod(root / "a", 0o600)
    os.rename(root / "a", root / "b")
    os.unlink(root / "b")
    assert pairs(watch.read()) == [("a", CHMOD), ("a", RENAME), ("b", CREATE), ("b", REMOVE)]


def test_events_on_the_watched_directory_itself_are_named_dot(tmp_path: Path) -> None:
    root = tmp_path / "self"
    root.mkdir()
    watch = open_watch(root)
    try:
        os.chmod(root, 0o700)
        root.rmdir()
        assert pairs(watch.read()) == [(".", CHMOD), (".", REMOVE)]
        assert watch.read() == []  # the watch is gone, and nothing breaks
    finally:
        watch.close()


def test_non_recursive_reports_subdirectory_but_not_its_contents(watched) -> None:
    root, make = watched
    watch = make()
    (root / "sub").mkdir()
    (root / "sub" / "f").write_text("x")
    assert pairs(watch.read()) == [("sub", CREATE)]


def test_recursive_watches_existing_and_new_subdirectories(watched) -> None:
    root, make = watched
    (root / "old" / "deeper").mkdir(parents=True)
    watch = make(recursive=True)
    (root / "old" / "deeper" / "f").write_text("x")
    (root / "new").mkdir()
    assert pairs(watch.read()) == [("old/deeper/f", CREATE), ("old/deeper/f", WRITE), ("new", CREATE)]
    (root / "new" / "g").write_text("y")
    assert pairs(watch.read()) == [("new/g", CREATE), ("new/g", WRITE)]


def test_subdirectory_changes_are_reported_once_by_name(watched) -> None:
    root, make = watched
    (root / "sub").mkdir()
    watch = make(recursive=True)
    os.chmod(root / "sub", 0o700)
    (root / "sub").rmdir()
    # Not doubled by the subdirectory's own watch (which would say the same thing).
    assert pairs(watch.read()) == [("sub", CHMOD), ("sub", REMOVE)]


def test_recursive_follows_directory_moved_in_from_outside(tmp_path: Path, watched) -> None:
    root, make = watched
    outside = tmp_path / "outside"
    (outside / "nested").mkdir(parents=True)
    watch = make(recursive=True)
    os.rename(outside, root / "moved")
    assert pairs(watch.read()) == [("moved", CREATE)]
    (root / "moved" / "nested" / "f").write_text("x")
    assert pairs(watch.read()) == [("moved/nested/f", CREATE), ("moved/nested/f", WRITE)]


def test_recursive_directory_renamed_within_tree_keeps_reporting_under_new_name(watched) -> None:
    root, make = watched
    (root / "a" / "inner").mkdir(parents=True)
    watch = make(recursive=True)
    os.rename(root / "a", root / "b")
    (root / "b" / "inner" / "f").write_text("x")  # before the rename is even read
    assert pairs(watch.read()) == [("a", RENAME), ("b", CREATE), ("b/inner/f", CREATE), ("b/inner/f", WRITE)]


def test_recursive_directory_moved_out_is_no_longer_watched(tmp_path: Path, watched) -> None:
    root, make = watched
    (root / "a").mkdir()
    watch = make(recursive=True)
    os.rename(root / "a", tmp_path / "gone")
    (tmp_path / "gone" / "f").write_text("x")
    assert pairs(watch.read()) == [("a", RENAME)]
    (tmp_path / "gone" / "g").write_text("x")
    assert watch.read() == []


def test_recursive_does_not_follow_symlinked_directories(tmp_path: Path, watched) -> None:
    root, make = watched
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "link").symlink_to(elsewhere)
    watch = make(recursive=True)
    (elsewhere / "f").write_text("x")
    assert watch.read() == []


# -- entries -----------------------------------------------------------------------------------------


def test_include_entry_only_for_create_write_chmod(watched) -> None:
    root, make = watched
    watch = make(include_entry=True)
    upload_like(root / "f")
    events = watch.read()
    assert pairs(events) == [("f", CREATE), ("f", CHMOD), ("f", WRITE)]
    for event in events:
        assert event.entry is not None
        assert event.entry.path == str(root / "f")
        assert event.entry.owner == "user"
    os.rename(root / "f", root / "g")
    os.unlink(root / "g")
    events = watch.read()
    assert pairs(events) == [("f", RENAME), ("g", CREATE), ("g", REMOVE)]
    assert [event.entry for event in events] == [None, None, None]  # g was gone before it was read


def test_entries_of_nested_paths_and_the_directory_itself(watched) -> None:
    root, make = watched
    (root / "sub").mkdir()
    watch = make(recursive=True, include_entry=True)
    (root / "sub" / "f").write_text("x")
    os.chmod(root, 0o750)
    events = watch.read()
    assert pairs(events) == [("sub/f", CREATE), ("sub/f", WRITE), (".", CHMOD)]
    assert events[0].entry.path == str(root / "sub" / "f")
    assert events[2].entry.path == str(root)
    assert events[2].entry.mode == 0o750


def test_without_include_entry_there_are_no_entries(watched) -> None:
    root, make = watched
    watch = make()
    (root / "f").write_text("x")
    assert all(event.entry is None for event in watch.read())


# -- failure -----------------------------------------------------------------------------------------


def overflow_queue(directory: Path) -> None:
    """Queue more events than the kernel keeps (alternating files defeat its merging of repeats)."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    fds = [os.open(directory / name, os.O_WRONLY | os.O_CREAT) for name in ("o1", "o2")]
    try:
        for i in range(limit // 2 + 100):
            os.write(fds[0], b"x")
            os.write(fds[1], b"x")
    finally:
        for fd in fds:
            os.close(fd)


def test_queue_overflow_fails_the_watch_for_good(watched) -> None:
    root, make = watched
    watch = make()
    overflow_queue(root)
    with pytest.raises(WatchFailed) as err:
        watch.read()
    assert isinstance(err.value, Internal)
    assert err.value.message == OVERFLOW_MESSAGE == "watcher error: fsnotify: queue or buffer overflow"
    with pytest.raises(WatchFailed):
        watch.read()


def test_close_releases_the_inotify_fd(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        open_watch(tmp_path, recursive=True).close()
    assert len(os.listdir("/proc/self/fd")) == before


# -- asyncio side ------------------------------------------------------------------------------------


def test_async_events_arrive_within_milliseconds(tmp_path: Path) -> None:
    async def scenario() -> list[float]:
        watch = await AsyncDirWatch.open(str(tmp_path), recursive=False, include_entry=True, allow_network_mounts=False)
        events = watch.events()
        delays = []
        try:
            for i in range(10):
                started = time.perf_counter()
                await asyncio.to_thread((tmp_path / f"f{i}").write_text, "x")
                event = await asyncio.wait_for(anext(events), 5)
                delays.append(time.perf_counter() - started)
                assert (event.name, event.type) == (f"f{i}", CREATE)
                assert (await asyncio.wait_for(anext(events), 5)).type == WRITE
        finally:
            await events.aclose()
            await watch.close()
        return delays

    delays = sorted(asyncio.run(scenario()))
    assert delays[len(delays) // 2] < 0.05


def test_async_close_while_a_reader_is_cancelled_leaks_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        watch = await AsyncDirWatch.open(str(tmp_path), recursive=True, include_entry=True, allow_network_mounts=False)
        events = watch.events()
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.01)
        (tmp_path / "f").write_text("x")
        await asyncio.sleep(0)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await events.aclose()
        await watch.close()
        assert await watch.read() == []  # a closed watch reads nothing rather than a recycled fd

    before = len(os.listdir("/proc/self/fd"))
    asyncio.run(scenario())
    assert len(os.listdir("/proc/self/fd")) == before


# -- polling watchers --------------------------------------------------------------------------------


def test_watcher_ids() -> None:
    ids = {new_watcher_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"w[a-z0-9]{20}", watcher_id) for watcher_id in ids)


def test_polling_watcher_returns_events_written_just_before_the_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        watchers = Watchers()
        watcher_id = await watchers.create(str(tmp_path), recursive=False, include_entry=False, allow_network_mounts=False)
        try:
            upload_like(tmp_path / "f")  # no await in between: only the poll itself can drain
            assert pairs(await watchers.events(watcher_id)) == [("f", CREATE), ("f", CHMOD), ("f", WRITE)]
            assert await watchers.events(watcher_id) == []  # each event delivered once
            os.chmod(tmp_path / "f", 0o600)
            await asyncio.sleep(0.05)  # the background reader buffers it meanwhile
            (tmp_path / "f").unlink()
            assert pairs(await watchers.events(watcher_id)) == [("f", CHMOD), ("f", REMOVE)]
        finally:
            await watchers.close()

    asyncio.run(scenario())


def test_polling_watcher_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        watchers = Watchers()
        with pytest.raises(NotFound) as err:
            await watchers.events("wnosuchwatcher0000000")
        assert err.value.message == "watcher with id wnosuchwatcher0000000 not found"
        with pytest.raises(NotFound):
            await watchers.create(str(tmp_path / "missing"), recursive=False, include_entry=False, allow_network_mounts=False)
        watcher_id = await watchers.create(str(tmp_path), recursive=False, include_entry=False, allow_network_mounts=False)
        await watchers.remove(watcher_id)
        with pytest.raises(NotFound):
            await watchers.events(watcher_id)
        with pytest.raises(NotFound):
            await watchers.remove(watcher_id)
        assert len(watchers) == 0

    asyncio.run(scenario())


def test_failed_polling_watcher_reports_its_error_on_every_poll(tmp_path: Path) -> None:
    async def scenario() -> None:
        watchers = Watchers()
        watcher_id = await watchers.create(str(tmp_path), recursive=False, include_entry=False, allow_network_mounts=False)
        try:
            overflow_queue(tmp_path)  # synchronous: the background reader gets no chance to keep up
            for _ in range(3):
                with pytest.raises(Internal) as err:
                    await watchers.events(watcher_id)
                assert err.value.message == OVERFLOW_MESSAGE
        finally:
            await watchers.close()

    asyncio.run(scenario())


def test_watchers_close_stops_everything(tmp_path: Path) -> None:
    async def scenario() -> None:
        watchers = Watchers()
        for _ in range(3):
            await watchers.create(str(tmp_path), recursive=True, include_entry=False, allow_network_mounts=False)
        await watchers.close()
        assert len(watchers) == 0

    before = len(os.listdir("/proc/self/fd"))
    asyncio.run(scenario())
    assert len(os.listdir("/proc/self/fd")) == before
    shutil.rmtree(tmp_path, ignore_errors=True)


# -- the WatchDir stream of the RPC adapter ------------------------------------------------------------


def test_watch_dir_stream_ends_with_the_watcher_error_and_releases_the_watch(tmp_path: Path) -> None:
    from connectrpc.method import IdempotencyLevel, MethodInfo
    from connectrpc.request import Headers, RequestContext

    from envd.services.filesystem.rpc import FilesystemService
    from envd.spec.filesystem import filesystem_pb2 as pb
    from envd.state import SandboxState

    ctx = RequestContext(
        method=MethodInfo(
            name="WatchDir",
            service_name="filesystem.Filesystem",
            input=pb.WatchDirRequest,
            output=pb.WatchDirResponse,
            idempotency_level=IdempotencyLevel.UNKNOWN,
        ),
        http_method="POST",
        request_headers=Headers({"authorization": "Basic dXNlcjo="}),  # user:
    )

    async def scenario() -> None:
        service = FilesystemService(SandboxState(default_user="user"))
        stream = service.watch_dir(pb.WatchDirRequest(path=str(tmp_path)), ctx)
        first = await anext(stream)
        assert first.WhichOneof("event") == "start"
        overflow_queue(tmp_path)
        with pytest.raises(WatchFailed) as err:
            async for _response in stream:
                pass  # events before the overflow may or may not come first
        assert err.value.message == OVERFLOW_MESSAGE
        await service.close()

    before = len(os.listdir("/proc/self/fd"))
    asyncio.run(scenario())
    assert len(os.listdir("/proc/self/fd")) == before
