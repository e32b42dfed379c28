"""filesystem.Filesystem through the real daemon with plain Connect JSON calls (spec/envd.md §4, §7, §9)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from tests.connect_wire import basic_auth as basic
from tests.connect_wire import envelope, read_envelopes

CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}
CONNECT_STREAM = {"content-type": "application/connect+json", "connect-protocol-version": "1"}
USER_UID = 1001


def call(daemon, method: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{daemon.url}/filesystem.Filesystem/{method}",
        content=json.dumps(body).encode(),
        headers={**CONNECT_JSON, **(headers or {})},
        timeout=10,
    )


@contextmanager
def watch_stream(daemon, body: dict, headers: dict | None = None) -> Iterator[tuple[httpx.Response, Iterator]]:
    with httpx.Client(timeout=15) as client:
        with client.stream(
            "POST",
            f"{daemon.url}/filesystem.Filesystem/WatchDir",
            content=envelope(json.dumps(body).encode()),
            headers={**CONNECT_STREAM, **(headers or {})},
        ) as response:
            yield response, read_envelopes(response.iter_raw())


def upload_like(path: Path, data: bytes = b"hello") -> None:
    """What POST /files does for a new file: create, chown to the user, write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fchown(fd, USER_UID, USER_UID)
        os.write(fd, data)
    finally:
        os.close(fd)


def daemon_fds(daemon) -> int:
    return psutil.Process(daemon.process.pid).num_fds()


def wait_for_fds(daemon, expected: int, timeout: float = 5) -> int:
    deadline = time.monotonic() + timeout
    while (count := daemon_fds(daemon)) > expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


# -- Stat --------------------------------------------------------------------------------------------


def test_stat_wire_format(daemon, user_home: Path) -> None:
    path = user_home / "data.txt"
    path.write_bytes(b"hello")
    os.chmod(path, 0o644)
    os.chown(path, USER_UID, USER_UID)
    os.utime(path, ns=(0, 1_700_000_000_123_456_789))
    r = call(daemon, "Stat", {"path": str(path)})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "entry": {
            "name": "data.txt",
            "type": "FILE_TYPE_FILE",
            "path": str(path),
            "size": "5",  # int64 as a JSON string
            "mode": 420,
            "permissions": "-rw-r--r--",
            "owner": "user",
            "group": "user",
            "modifiedTime": "2023-11-14T22:13:20.123456789Z",
        }
    }


def test_stat_symlink_reports_resolved_target_and_metadata(daemon, user_home: Path) -> None:
    target = user_home / "target"
    target.mkdir()
    os.setxattr(target, "user.e2b.purpose", b"tests")
    (user_home / "link").symlink_to("target")
    entry = call(daemon, "Stat", {"path": str(user_home / "link")}).json()["entry"]
    assert entry["type"] == "FILE_TYPE_DIRECTORY"
    assert entry["symlinkTarget"] == str(target)
    assert entry["permissions"] == "Lrwxrwxrwx"
    assert entry["metadata"] == {"purpose": "tests"}


def test_relative_paths_resolve_against_the_callers_home(daemon, user_home: Path) -> None:
    relative = user_home.name
    entry = call(daemon, "Stat", {"path": relative}).json()["entry"]
    assert entry["path"] == str(user_home)
    r = call(daemon, "Stat", {"path": ""}, basic("root"))
    assert r.json()["entry"]["path"] == "/root"


def test_stat_missing_is_not_found(daemon, user_home: Path) -> None:
    r = call(daemon, "Stat", {"path": str(user_home / "missing")})
    assert r.status_code == 404
    assert r.json() == {
        "code": "not_found",
        "message": f"file not found: lstat {user_home}/missing: no such file or directory",
    }


def test_other_users_tilde_is_invalid_argument(daemon) -> None:
    r = call(daemon, "Stat", {"path": "~root/x"})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_argument"
    assert "cannot expand user-specific home dir" in r.json()["message"]


def test_unknown_basic_user_is_unauthenticated(daemon) -> None:
    r = call(daemon, "Stat", {"path": "/tmp"}, basic("no-such-user-xyz"))
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"


def test_unknown_request_fields_are_ignored_and_snake_case_accepted(daemon, user_home: Path) -> None:
    (user_home / "f").write_text("")
    r = call(daemon, "ListDir", {"path": str(user_home), "depth": 1, "someFutureField": [1, 2]})
    assert [e["name"] for e in r.json()["entries"]] == ["f"]
    r = call(daemon, "CreateWatcher", {"path": str(user_home), "include_entry": True, "allow_network_mounts": False})
    assert r.status_code == 200
    assert call(daemon, "RemoveWatcher", {"watcher_id": r.json()["watcherId"]}).status_code == 200


# -- ListDir / MakeDir / Move / Remove ----------------------------------------------------------------


def test_list_dir_depth_and_order(daemon, user_home: Path) -> None:
    (user_home / "a").mkdir()
    (user_home / "a" / "x").write_text("")
    (user_home / "b").write_text("")
    listed = call(daemon, "ListDir", {"path": str(user_home), "depth": 2}).json()["entries"]
    assert [e["path"] for e in listed] == [f"{user_home}/a", f"{user_home}/a/x", f"{user_home}/b"]
    listed = call(daemon, "ListDir", {"path": str(user_home)}).json()["entries"]  # depth omitted = 0 -> 1
    assert [e["name"] for e in listed] == ["a", "b"]


def test_list_dir_errors(daemon, user_home: Path) -> None:
    (user_home / "f").write_text("")
    r = call(daemon, "ListDir", {"path": str(user_home / "f")})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_argument")
    r = call(daemon, "ListDir", {"path": str(user_home / "missing")})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    (user_home / "loop1").symlink_to(user_home / "loop2")
    (user_home / "loop2").symlink_to(user_home / "loop1")
    r = call(daemon, "ListDir", {"path": str(user_home / "loop1")})
    assert (r.status_code, r.json()["code"]) == (400, "failed_precondition")


def test_make_dir(daemon, user_home: Path) -> None:
    r = call(daemon, "MakeDir", {"path": str(user_home / "p" / "q")})
    assert r.status_code == 200
    entry = r.json()["entry"]
    assert (entry["type"], entry["owner"], entry["group"]) == ("FILE_TYPE_DIRECTORY", "user", "user")
    assert (user_home / "p").stat().st_uid == USER_UID
    r = call(daemon, "MakeDir", {"path": str(user_home / "p" / "q")})
    assert r.status_code == 409
    assert r.json() == {"code": "already_exists", "message": f"directory already exists: {user_home}/p/q"}
    (user_home / "f").write_text("")
    r = call(daemon, "MakeDir", {"path": str(user_home / "f")})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_argument")


def test_make_dir_as_root_is_owned_by_root(daemon, user_home: Path) -> None:
    call(daemon, "MakeDir", {"path": str(user_home / "rootdir")}, basic("root"))
    assert (user_home / "rootdir").stat().st_uid == 0


def test_move(daemon, user_home: Path) -> None:
    (user_home / "src").write_text("data")
    r = call(daemon, "Move", {"source": str(user_home / "src"), "destination": str(user_home / "sub" / "dst")})
    assert r.status_code == 200
    assert r.json()["entry"]["path"] == f"{user_home}/sub/dst"
    assert (user_home / "sub" / "dst").read_text() == "data"
    r = call(daemon, "Move", {"source": str(user_home / "src"), "destination": str(user_home / "x")})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_remove(daemon, user_home: Path) -> None:
    (user_home / "d" / "e").mkdir(parents=True)
    r = call(daemon, "Remove", {"path": str(user_home / "d")})
    assert (r.status_code, r.json()) == (200, {})
    assert not (user_home / "d").exists()
    r = call(daemon, "Remove", {"path": str(user_home / "d")})  # missing: still success
    assert (r.status_code, r.json()) == (200, {})


# -- WatchDir ----------------------------------------------------------------------------------------


def test_watch_dir_stream_framing_and_events(daemon, user_home: Path) -> None:
    with watch_stream(daemon, {"path": str(user_home), "recursive": True, "includeEntry": True}) as (r, messages):
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/connect+json"
        assert next(messages) == (0, {"start": {}})
        (user_home / "sub").mkdir()
        flags, first = next(messages)
        assert flags == 0
        assert first["filesystem"]["name"] == "sub"
        assert first["filesystem"]["type"] == "EVENT_TYPE_CREATE"
        assert first["filesystem"]["entry"]["type"] == "FILE_TYPE_DIRECTORY"
        # sub/ is watched by now: the daemon attaches new directories before reporting them.
        upload_like(user_home / "sub" / "f.txt")
        got = [next(messages)[1]["filesystem"] for _ in range(3)]
        assert [(e["name"], e["type"]) for e in got] == [
            ("sub/f.txt", "EVENT_TYPE_CREATE"),
            ("sub/f.txt", "EVENT_TYPE_CHMOD"),
            ("sub/f.txt", "EVENT_TYPE_WRITE"),
        ]
        assert got[2]["entry"]["path"] == f"{user_home}/sub/f.txt"
        (user_home / "sub" / "f.txt").unlink()
        removed = next(messages)[1]["filesystem"]
        assert removed == {"name": "sub/f.txt", "type": "EVENT_TYPE_REMOVE"}  # never an entry on REMOVE


def test_watch_dir_keepalives(daemon, user_home: Path) -> None:
    started = time.monotonic()
    with watch_stream(daemon, {"path": str(user_home)}, {"keepalive-ping-interval": "1"}) as (_r, messages):
        assert next(messages) == (0, {"start": {}})
        assert next(messages) == (0, {"keepalive": {}})
        assert next(messages) == (0, {"keepalive": {}})
    assert 1.8 < time.monotonic() - started < 4


def test_watch_dir_deadline_ends_with_deadline_exceeded(daemon, user_home: Path) -> None:
    baseline = daemon_fds(daemon)
    started = time.monotonic()
    with watch_stream(daemon, {"path": str(user_home)}, {"connect-timeout-ms": "600"}) as (_r, messages):
        received = list(messages)
    assert received[0] == (0, {"start": {}})
    flags, end = received[-1]
    assert flags == 2
    assert end["error"]["code"] == "deadline_exceeded"
    assert 0.5 < time.monotonic() - started < 3
    assert wait_for_fds(daemon, baseline) <= baseline  # the watch went with the stream


def test_watch_dir_validation_errors_end_the_stream(daemon, user_home: Path) -> None:
    with watch_stream(daemon, {"path": str(user_home / "missing")}) as (r, messages):
        assert r.status_code == 200  # streaming errors travel in the end-of-stream envelope
        ((flags, end),) = list(messages)
    assert flags == 2
    assert end["error"]["code"] == "not_found"
    assert end["error"]["message"].startswith(f"path {user_home}/missing not found")
    (user_home / "f").write_text("")
    with watch_stream(daemon, {"path": str(user_home / "f")}) as (_r, messages):
        ((flags, end),) = list(messages)
    assert (flags, end["error"]["code"]) == (2, "invalid_argument")
    with watch_stream(daemon, {"path": "/tmp"}, basic("no-such-user-xyz")) as (_r, messages):
        ((flags, end),) = list(messages)
    assert (flags, end["error"]["code"]) == (2, "unauthenticated")


def test_watch_dir_is_torn_down_when_the_client_goes_away(daemon, user_home: Path) -> None:
    baseline = daemon_fds(daemon)
    for _ in range(3):
        with watch_stream(daemon, {"path": str(user_home), "recursive": True}) as (_r, messages):
            assert next(messages) == (0, {"start": {}})
            assert daemon_fds(daemon) > baseline  # the inotify fd (and the connection)
    assert wait_for_fds(daemon, baseline) <= baseline
    assert call(daemon, "Stat", {"path": "/"}).status_code == 200


def test_watch_dir_latency(daemon, user_home: Path) -> None:
    delays = []
    with watch_stream(daemon, {"path": str(user_home)}) as (_r, messages):
        assert next(messages) == (0, {"start": {}})
        for i in range(20):
            started = time.perf_counter()
            with open(user_home / f"f{i}", "wb") as f:
                f.write(b"x")
            _flags, message = next(messages)
            delays.append(time.perf_counter() - started)
            assert message["filesystem"] == {"name": f"f{i}", "type": "EVENT_TYPE_CREATE"}
            assert next(messages)[1]["filesystem"]["type"] == "EVENT_TYPE_WRITE"
    delays.sort()
    assert delays[len(delays) // 2] <= 0.05, delays


# -- polling watchers --------------------------------------------------------------------------------


def test_polling_watcher_lifecycle(daemon, user_home: Path) -> None:
    r = call(daemon, "CreateWatcher", {"path": str(user_home), "includeEntry": True}, {"keepalive-ping-interval": "50"})
    assert r.status_code == 200
    watcher_id = r.json()["watcherId"]
    assert re.fullmatch(r"w[a-z0-9]{20}", watcher_id)

    upload_like(user_home / "f.txt")
    events = call(daemon, "GetWatcherEvents", {"watcherId": watcher_id}).json()["events"]
    assert [(e["name"], e["type"]) for e in events] == [
        ("f.txt", "EVENT_TYPE_CREATE"),
        ("f.txt", "EVENT_TYPE_CHMOD"),
        ("f.txt", "EVENT_TYPE_WRITE"),
    ]
    assert all(e["entry"]["path"] == f"{user_home}/f.txt" for e in events)
    assert call(daemon, "GetWatcherEvents", {"watcherId": watcher_id}).json() == {}  # no events: empty message

    assert call(daemon, "RemoveWatcher", {"watcherId": watcher_id}).json() == {}
    r = call(daemon, "GetWatcherEvents", {"watcherId": watcher_id})
    assert r.status_code == 404
    assert r.json() == {"code": "not_found", "message": f"watcher with id {watcher_id} not found"}
    assert call(daemon, "RemoveWatcher", {"watcherId": watcher_id}).status_code == 404


def test_create_watcher_validation(daemon, user_home: Path) -> None:
    r = call(daemon, "CreateWatcher", {"path": str(user_home / "missing")})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    (user_home / "f").write_text("")
    r = call(daemon, "CreateWatcher", {"path": str(user_home / "f")})
    assert (r.status_code, r.json()["code"]) == (400, "invalid_argument")


# -- legacy SDK layer (§9) ---------------------------------------------------------------------------


LEGACY = {"user-agent": "connect-python"}


def test_legacy_user_agent_gets_reduced_entries(daemon, user_home: Path) -> None:
    (user_home / "f").write_text("x")
    r = call(daemon, "Stat", {"path": str(user_home / "f")}, LEGACY)
    assert r.headers["x-e2b-legacy-sdk"] == "true"
    assert r.json() == {"entry": {"name": "f", "type": "FILE_TYPE_FILE", "path": f"{user_home}/f"}}
    r = call(daemon, "ListDir", {"path": str(user_home)}, LEGACY)
    assert r.json() == {"entries": [{"name": "f", "type": "FILE_TYPE_FILE", "path": f"{user_home}/f"}]}
    r = call(daemon, "Stat", {"path": str(user_home / "f")}, {"user-agent": "connect-python/0.4"})
    assert "x-e2b-legacy-sdk" not in r.headers
    assert "size" in r.json()["entry"]


def test_legacy_user_agent_gets_reduced_events(daemon, user_home: Path) -> None:
    r = call(daemon, "CreateWatcher", {"path": str(user_home), "includeEntry": True}, LEGACY)
    assert r.headers["x-e2b-legacy-sdk"] == "true"
    watcher_id = r.json()["watcherId"]
    (user_home / "g").write_text("x")
    events = call(daemon, "GetWatcherEvents", {"watcherId": watcher_id}, LEGACY).json()["events"]
    assert events == [{"name": "g", "type": "EVENT_TYPE_CREATE"}, {"name": "g", "type": "EVENT_TYPE_WRITE"}]
    call(daemon, "RemoveWatcher", {"watcherId": watcher_id})

    with watch_stream(daemon, {"path": str(user_home), "includeEntry": True}, LEGACY) as (r, messages):
        assert r.headers["x-e2b-legacy-sdk"] == "true"
        assert next(messages) == (0, {"start": {}})
        (user_home / "h").write_text("x")
        assert next(messages) == (0, {"filesystem": {"name": "h", "type": "EVENT_TYPE_CREATE"}})


@pytest.mark.parametrize("method", ["Stat", "ListDir", "MakeDir", "Remove", "CreateWatcher"])
def test_other_http_methods_are_rejected(daemon, method: str) -> None:
    r = httpx.get(f"{daemon.url}/filesystem.Filesystem/{method}")
    assert r.status_code in (405, 415)
