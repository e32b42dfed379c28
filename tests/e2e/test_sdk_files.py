"""`sandbox.files` through the unmodified Python SDK (e2b 2.63) in debug mode against a real envd.

Debug mode (sdk-expectations.md §2.1): no control-plane call, no access token, envd version
99.99.99 so every feature gate is open; `E2B_SANDBOX_URL` points all envd traffic (RPC, /files,
signed URLs) at the session daemon. Default user `user`, relative paths resolve under /home/user.
"""

from __future__ import annotations

import asyncio
import grp
import gzip
import io
import os
import pwd
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from e2b import (
    AsyncSandbox,
    FileNotFoundException,
    FileType,
    FilesystemEventType,
    InvalidArgumentException,
    Sandbox,
    SandboxException,
)

pytestmark = pytest.mark.sdk

CREATE, WRITE, REMOVE, RENAME, CHMOD = (
    FilesystemEventType.CREATE,
    FilesystemEventType.WRITE,
    FilesystemEventType.REMOVE,
    FilesystemEventType.RENAME,
    FilesystemEventType.CHMOD,
)


@pytest.fixture(scope="module")
def sbx(debug_env) -> Sandbox:
    sandbox = Sandbox.create()
    assert sandbox.sandbox_id == "debug_sandbox_id"
    assert sandbox.envd_api_url == debug_env
    return sandbox


@pytest.fixture(scope="module")
def home(sandbox_user) -> Path:
    return Path(pwd.getpwnam(sandbox_user).pw_dir)


@pytest.fixture(scope="module")
def scratch(home, sandbox_user) -> Iterator[Path]:
    """A directory under /home/user for this module; its name doubles as a relative path."""
    pw = pwd.getpwnam(sandbox_user)
    d = home / f"envd-sdk-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    os.chown(d, pw.pw_uid, pw.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def work(scratch, request) -> Path:
    """A fresh subdirectory per test (owned by user), so tests don't see each other's files."""
    d = scratch / request.node.name.replace("[", "_").replace("]", "")
    d.mkdir()
    os.chown(d, scratch.stat().st_uid, scratch.stat().st_gid)
    return d


def rel(path: Path, home: Path) -> str:
    return str(path.relative_to(home))


def owner_of(path: Path) -> tuple[str, str]:
    st = os.lstat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


# --- read / write -------------------------------------------------------------------------------


def test_write_relative_path_then_read_as_text_bytes_and_stream(sbx, work, home):
    text = "héllo wörld ✓\nsecond line\n"
    info = sbx.files.write(f"{rel(work, home)}/hello.txt", text)
    # §3.3: responses always carry absolute paths, even for a relative request.
    assert (info.name, info.type, info.path) == ("hello.txt", FileType.FILE, str(work / "hello.txt"))
    assert info.metadata is None
    assert (work / "hello.txt").read_text() == text

    assert sbx.files.read(str(work / "hello.txt")) == text
    assert sbx.files.read(f"{rel(work, home)}/hello.txt", format="bytes") == bytearray(text.encode())
    with sbx.files.read(str(work / "hello.txt"), format="stream") as stream:
        assert b"".join(stream) == text.encode()


def test_new_file_is_0644_owned_by_user(sbx, work):
    sbx.files.write(str(work / "new.txt"), "x")
    st = os.stat(work / "new.txt")
    assert st.st_mode & 0o777 == 0o644
    assert owner_of(work / "new.txt") == ("user", "user")


def test_write_overwrites_and_keeps_mode(sbx, work):
    target = work / "over.txt"
    target.write_text("a much longer original content")
    target.chmod(0o600)
    sbx.files.write(str(target), "short")
    assert target.read_text() == "short"
    assert target.stat().st_mode & 0o777 == 0o600
    assert owner_of(target) == ("user", "user")  # §3.7.4: ownership moves to the uploader


def test_binary_round_trip_and_large_stream_download(sbx, work):
    blob = bytes(range(256)) * 16 + b"\x00\xff\r\n"
    sbx.files.write(str(work / "blob.bin"), blob)
    assert bytes(sbx.files.read(str(work / "blob.bin"), format="bytes")) == blob

    big = os.urandom(3 * 1024 * 1024 + 17)
    (work / "big.bin").write_bytes(big)
    with sbx.files.read(str(work / "big.bin"), format="stream") as stream:
        chunks = list(stream)
    assert b"".join(chunks) == big


def test_streamed_uploads_file_object_and_iterable(sbx, work):
    # File-like and iterable data go as chunked application/octet-stream, one request per file (§3.3).
    payload = os.urandom(512 * 1024)
    info = sbx.files.write(str(work / "from-file.bin"), io.BytesIO(payload))
    assert info.path == str(work / "from-file.bin")
    assert (work / "from-file.bin").read_bytes() == payload

    def chunks():
        for i in range(0, len(payload), 10_000):
            yield payload[i : i + 10_000]

    sbx.files.write(str(work / "deep" / "from-iter.bin"), chunks())
    assert (work / "deep" / "from-iter.bin").read_bytes() == payload
    assert owner_of(work / "deep") == ("user", "user")

    sbx.files.write(str(work / "octet.txt"), "forced octet", use_octet_stream=True)
    assert (work / "octet.txt").read_text() == "forced octet"


def test_empty_file_round_trip(sbx, work):
    sbx.files.write(str(work / "empty.txt"), "")
    assert (work / "empty.txt").stat().st_size == 0
    assert sbx.files.read(str(work / "empty.txt")) == ""
    assert sbx.files.read(str(work / "empty.txt"), format="bytes") == bytearray()
    assert sbx.files.read(str(work / "empty.txt"), gzip=True) == ""
    r = httpx.get(sbx.download_url(str(work / "empty.txt")), headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["content-length"] == "0"


def test_write_files_relative_and_absolute_with_nested_dirs(sbx, work, home):
    entries = [
        {"path": f"{rel(work, home)}/a.txt", "data": "A"},
        {"path": str(work / "nested" / "deeper" / "b.txt"), "data": b"B\x00"},
        {"path": f"{rel(work, home)}/other/c d.txt", "data": "C with space"},
    ]
    infos = sbx.files.write_files(entries)
    assert [(i.name, i.path, i.type) for i in infos] == [
        ("a.txt", str(work / "a.txt"), FileType.FILE),
        ("b.txt", str(work / "nested" / "deeper" / "b.txt"), FileType.FILE),
        ("c d.txt", str(work / "other" / "c d.txt"), FileType.FILE),
    ]
    assert (work / "a.txt").read_text() == "A"
    assert (work / "nested" / "deeper" / "b.txt").read_bytes() == b"B\x00"
    assert (work / "other" / "c d.txt").read_text() == "C with space"
    for d in (work / "nested", work / "nested" / "deeper", work / "other"):
        assert d.is_dir() and owner_of(d) == ("user", "user")
        assert d.stat().st_mode & 0o777 == 0o755

    # A single-entry write_files sends the `path` query (§3.3); an empty list makes no request.
    [single] = sbx.files.write_files([{"path": str(work / "single.txt"), "data": "1"}])
    assert single.path == str(work / "single.txt")
    assert sbx.files.write_files([]) == []


def test_multipart_filenames_are_full_paths_kept_verbatim(sbx, work, home):
    # Several files -> no `path` query; each part's filename is the destination (§3.7.2), raw UTF-8.
    names = ["ünïcødé.txt", "日本語/ファイル.txt", "semi;colon & co.txt", "#hash?.txt"]
    infos = sbx.files.write_files([{"path": f"{rel(work, home)}/{n}", "data": n} for n in names])
    assert [i.path for i in infos] == [str(work / n) for n in names]
    for n in names:
        assert (work / n).read_text() == n
        assert sbx.files.read(str(work / n)) == n


def test_large_multipart_upload(sbx, work):
    payload = os.urandom(8 * 1024 * 1024 + 3)
    sbx.files.write(str(work / "large.bin"), payload)
    assert (work / "large.bin").read_bytes() == payload
    assert sbx.files.get_info(str(work / "large.bin")).size == len(payload)


def test_connect_and_health_in_debug_mode(sbx, debug_env, work):
    assert sbx.is_running() is True
    again = Sandbox.connect("debug_sandbox_id")
    (work / "c.txt").write_text("connected")
    assert again.files.read(str(work / "c.txt")) == "connected"


def test_read_missing_file_and_directory(sbx, work):
    with pytest.raises(FileNotFoundException):
        sbx.files.read(str(work / "missing.txt"))
    # §3.6 step 6: a directory is a 400 -> InvalidArgumentException naming the path.
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sbx.files.read(str(work))


def test_write_onto_a_directory_is_refused(sbx, work):
    (work / "d").mkdir()
    # §3.7.4 step 2: 400 "path is a directory: <p>"; the streamed body must not turn it into a transport error.
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sbx.files.write(str(work / "d"), "x")
    with pytest.raises(InvalidArgumentException, match="is a directory"):
        sbx.files.write(str(work / "d"), io.BytesIO(os.urandom(1024 * 1024)))
    assert (work / "d").is_dir()


def test_unsigned_download_and_upload_urls_in_debug_mode(sbx, work):
    (work / "dl.txt").write_text("via url")
    url = sbx.download_url(str(work / "dl.txt"))
    assert url.startswith(sbx.envd_api_url + "/files?") and "signature" not in url
    assert httpx.get(url).text == "via url"

    up = sbx.upload_url(str(work / "up.txt"))
    r = httpx.post(up, files={"file": ("ignored-name", b"uploaded")})
    assert r.status_code == 200, r.text
    assert r.json()[0]["path"] == str(work / "up.txt")
    assert (work / "up.txt").read_bytes() == b"uploaded"

    with pytest.raises(InvalidArgumentException, match="only when sandbox is created as secured"):
        sbx.download_url(str(work / "dl.txt"), use_signature_expiration=60)


# --- list / exists / get_info ---------------------------------------------------------------------


def make_tree(root: Path) -> None:
    for d in ("subdir1/subdir1_1", "subdir1/subdir1_2", "subdir2/subdir2_1"):
        (root / d).mkdir(parents=True)
    for f in ("file1.txt", "subdir1/subdir1_1/deep.txt", "subdir2/file2.txt", "subdir1/a.txt"):
        (root / f).write_text(f)


def test_list_depths_in_lexical_preorder(sbx, work, home):
    make_tree(work)
    names1 = [(e.name, e.type) for e in sbx.files.list(str(work))]
    assert names1 == [("file1.txt", FileType.FILE), ("subdir1", FileType.DIR), ("subdir2", FileType.DIR)]

    two = sbx.files.list(f"{rel(work, home)}", depth=2)
    assert [str(Path(e.path).relative_to(work)) for e in two] == [
        "file1.txt",
        "subdir1",
        "subdir1/a.txt",
        "subdir1/subdir1_1",
        "subdir1/subdir1_2",
        "subdir2",
        "subdir2/file2.txt",
        "subdir2/subdir2_1",
    ]
    # Relative request, absolute answers; names are base names.
    assert all(e.path.startswith(str(work) + "/") for e in two)
    assert two[3].name == "subdir1_1"

    three = sbx.files.list(str(work), depth=3)
    assert str(work / "subdir1" / "subdir1_1" / "deep.txt") in [e.path for e in three]
    assert len(three) == 9

    with pytest.raises(InvalidArgumentException):
        sbx.files.list(str(work), depth=0)  # enforced client-side


def test_list_errors(sbx, work):
    (work / "plain.txt").write_text("x")
    with pytest.raises(FileNotFoundException):
        sbx.files.list(str(work / "nope"))
    # §7.3: not a directory -> invalid_argument.
    with pytest.raises(InvalidArgumentException, match="not a directory"):
        sbx.files.list(str(work / "plain.txt"))


def test_list_reports_symlinks_with_target_type(sbx, work):
    (work / "real").mkdir()
    (work / "real" / "inside.txt").write_text("i")
    (work / "link-dir").symlink_to(work / "real")
    (work / "link-file").symlink_to(work / "real" / "inside.txt")
    entries = {e.name: e for e in sbx.files.list(str(work), depth=2)}
    # §7.3 step 4: links are listed with the target's type but never entered.
    assert set(entries) == {"real", "inside.txt", "link-dir", "link-file"}
    assert entries["link-dir"].type == FileType.DIR
    assert entries["link-dir"].symlink_target == str(work / "real")
    assert entries["link-file"].type == FileType.FILE
    assert entries["real"].symlink_target is None


def test_exists(sbx, work, home):
    (work / "f.txt").write_text("x")
    (work / "dangling").symlink_to(work / "gone")
    assert sbx.files.exists(str(work / "f.txt"))
    assert sbx.files.exists(f"{rel(work, home)}/f.txt")
    assert sbx.files.exists(str(work))
    assert not sbx.files.exists(str(work / "missing"))
    # §3.3: lstat, so a dangling link still exists.
    assert sbx.files.exists(str(work / "dangling"))


def test_get_info_file_fields(sbx, work, home):
    sbx.files.write(str(work / "info.txt"), "12345")
    before = datetime.now(timezone.utc)
    info = sbx.files.get_info(f"{rel(work, home)}/info.txt")
    assert info.name == "info.txt"
    assert info.path == str(work / "info.txt")
    assert info.type == FileType.FILE
    assert info.size == 5
    assert info.mode == 0o644
    assert info.permissions == "-rw-r--r--"
    assert (info.owner, info.group) == ("user", "user")
    assert info.symlink_target is None
    assert info.metadata is None
    assert info.modified_time.tzinfo is not None
    assert abs(info.modified_time - before) < timedelta(seconds=30)
    mtime = os.stat(work / "info.txt").st_mtime
    assert abs(info.modified_time.timestamp() - mtime) < 0.001


def test_get_info_directory_and_root_owned(sbx, work, sandbox_user):
    pw = pwd.getpwnam(sandbox_user)
    (work / "d").mkdir()
    (work / "d").chmod(0o755)
    os.chown(work / "d", pw.pw_uid, pw.pw_gid)
    d = sbx.files.get_info(str(work / "d"))
    assert (d.type, d.mode, d.permissions, d.owner) == (FileType.DIR, 0o755, "drwxr-xr-x", "user")
    root = sbx.files.get_info("/")
    assert (root.name, root.path, root.type, root.owner, root.group) == ("/", "/", FileType.DIR, "root", "root")
    if os.stat("/tmp").st_mode & 0o7777 == 0o1777:
        tmp = sbx.files.get_info("/tmp")
        assert tmp.permissions == "dtrwxrwxrwx" and tmp.mode == 0o777  # sticky bit only in the text form


def test_get_info_symlink_reports_target(sbx, work):
    (work / "target.txt").write_text("target!")
    (work / "hop").symlink_to("target.txt")  # relative link text
    (work / "link").symlink_to(work / "hop")  # a chain: link -> hop -> target.txt
    info = sbx.files.get_info(str(work / "link"))
    # §3.3 / §7.1: type and mode describe the target; symlink_target is fully resolved.
    assert info.type == FileType.FILE
    assert info.symlink_target == str(work / "target.txt")
    assert info.path == str(work / "link") and info.name == "link"
    assert info.mode == 0o644
    assert info.permissions == "Lrwxrwxrwx"
    assert info.size == len(str(work / "hop"))

    (work / "dangling").symlink_to(work / "nowhere")
    dangling = sbx.files.get_info(str(work / "dangling"))
    assert dangling.symlink_target == str(work / "dangling")


def test_get_info_missing(sbx, work):
    with pytest.raises(FileNotFoundException):
        sbx.files.get_info(str(work / "nope"))


# --- remove / rename / make_dir -------------------------------------------------------------------


def test_remove_file_dir_and_missing(sbx, work, home):
    (work / "f.txt").write_text("x")
    (work / "tree" / "a" / "b").mkdir(parents=True)
    (work / "tree" / "a" / "b" / "c.txt").write_text("c")
    (work / "keep.txt").write_text("k")
    (work / "link").symlink_to(work / "keep.txt")

    sbx.files.remove(f"{rel(work, home)}/f.txt")
    assert not (work / "f.txt").exists()
    sbx.files.remove(str(work / "tree"))
    assert not (work / "tree").exists()
    sbx.files.remove(str(work / "link"))  # the link itself, not its target
    assert not (work / "link").is_symlink() and (work / "keep.txt").read_text() == "k"
    sbx.files.remove(str(work / "never-existed"))  # §3.3: silently fine
    assert not sbx.files.exists(str(work / "tree"))


def test_rename(sbx, work, home):
    (work / "old.txt").write_text("payload")
    info = sbx.files.rename(str(work / "old.txt"), f"{rel(work, home)}/moved/into/new.txt")
    assert (info.name, info.path, info.type, info.size) == ("new.txt", str(work / "moved/into/new.txt"), FileType.FILE, 7)
    assert not (work / "old.txt").exists()
    assert (work / "moved/into/new.txt").read_text() == "payload"
    assert owner_of(work / "moved") == ("user", "user")  # parents created for the destination (§7.5)

    (work / "dir").mkdir()
    (work / "dir" / "x").write_text("x")
    d = sbx.files.rename(str(work / "dir"), str(work / "dir2"))
    assert d.type == FileType.DIR and (work / "dir2" / "x").exists()

    (work / "dst.txt").write_text("old destination")
    sbx.files.rename(str(work / "dir2" / "x"), str(work / "dst.txt"))  # replaces a file
    assert (work / "dst.txt").read_text() == "x"

    with pytest.raises(FileNotFoundException):
        sbx.files.rename(str(work / "nope"), str(work / "whatever"))


def test_make_dir(sbx, work, home):
    assert sbx.files.make_dir(f"{rel(work, home)}/a/b/c") is True
    for d in (work / "a", work / "a/b", work / "a/b/c"):
        assert d.is_dir() and owner_of(d) == ("user", "user")
        assert d.stat().st_mode & 0o777 == 0o755
    assert sbx.files.make_dir(str(work / "a/b/c")) is False  # already_exists -> False
    (work / "file").write_text("x")
    with pytest.raises(InvalidArgumentException):
        sbx.files.make_dir(str(work / "file"))


# --- metadata, gzip ---------------------------------------------------------------------------------


def test_metadata_set_read_back_and_cleared(sbx, work):
    path = str(work / "meta.txt")
    written = sbx.files.write(path, "m", metadata={"project": "envd", "Mixed-Case": "Value With Spaces"})
    # Keys come back lowercased (§3.7 step 5); values verbatim.
    expected = {"project": "envd", "mixed-case": "Value With Spaces"}
    assert written.metadata == expected
    assert sbx.files.get_info(path).metadata == expected
    listed = {e.name: e for e in sbx.files.list(str(work))}
    assert listed["meta.txt"].metadata == expected
    assert os.getxattr(path, "user.e2b.project") == b"envd"

    renamed = sbx.files.rename(path, str(work / "meta2.txt"))
    assert renamed.metadata == expected  # xattrs travel with rename(2)

    # §3.7.3: every upload replaces the whole set; one without metadata clears it.
    sbx.files.write(str(work / "meta2.txt"), "m2")
    assert sbx.files.get_info(str(work / "meta2.txt")).metadata is None
    assert not [a for a in os.listxattr(work / "meta2.txt") if a.startswith("user.e2b.")]

    sbx.files.write(str(work / "meta2.txt"), "m3", metadata={"a": "1"})
    sbx.files.write(str(work / "meta2.txt"), "m4", metadata={"b": "2"})
    assert sbx.files.get_info(str(work / "meta2.txt")).metadata == {"b": "2"}


def test_metadata_applies_to_every_file_and_streams(sbx, work):
    infos = sbx.files.write_files(
        [{"path": str(work / "one.txt"), "data": "1"}, {"path": str(work / "two.txt"), "data": io.BytesIO(b"2")}],
        metadata={"batch": "7"},
    )
    assert [i.metadata for i in infos] == [{"batch": "7"}, {"batch": "7"}]
    assert sbx.files.get_info(str(work / "two.txt")).metadata == {"batch": "7"}


def test_metadata_invalid_value_is_rejected(sbx, work):
    with pytest.raises(InvalidArgumentException):
        sbx.files.write(str(work / "bad.txt"), "x", metadata={"k": "caf\u00e9"})  # SDK-side check


def test_gzip_upload_and_download(sbx, work):
    text = "compress me " * 5000
    info = sbx.files.write(str(work / "gz.txt"), text, gzip=True)
    assert info.path == str(work / "gz.txt")
    assert (work / "gz.txt").read_text() == text  # stored decompressed

    assert sbx.files.read(str(work / "gz.txt"), gzip=True) == text
    assert bytes(sbx.files.read(str(work / "gz.txt"), format="bytes", gzip=True)) == text.encode()
    with sbx.files.read(str(work / "gz.txt"), format="stream", gzip=True) as stream:
        assert b"".join(stream) == text.encode()

    # On the wire it really is gzip (§3.6.1): check with a client that does not decode.
    with httpx.Client() as client:
        req = client.build_request("GET", sbx.download_url(str(work / "gz.txt")), headers={"Accept-Encoding": "gzip"})
        r = client.send(req, stream=True)
        raw = b"".join(r.iter_raw())
        r.close()
    assert r.headers.get("content-encoding") == "gzip"
    assert gzip.decompress(raw) == text.encode()

    stream_payload = os.urandom(200_000)
    sbx.files.write(str(work / "gz-stream.bin"), io.BytesIO(stream_payload), gzip=True)
    assert (work / "gz-stream.bin").read_bytes() == stream_payload


# --- watch_dir --------------------------------------------------------------------------------------


def collect(handle, until, timeout=5.0):
    """Poll GetWatcherEvents until `until(events)` holds (the server drains pending inotify first)."""
    events = []
    deadline = time.monotonic() + timeout
    while True:
        events += handle.get_new_events()
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def kinds(events, name):
    return [e.type for e in events if e.name == name]


def test_sync_watch_events_are_ready_immediately(sbx, work):
    handle = sbx.files.watch_dir(str(work))
    try:
        sbx.files.write(str(work / "w.txt"), "hello")
        # sdk-expectations §3.3: read right after the write, no sleeping; exactly 3 events, CREATE first.
        events = handle.get_new_events()
        assert [e.name for e in events] == ["w.txt"] * 3, events
        assert events[0].type == CREATE
        assert sorted(e.type.value for e in events) == sorted(["create", "chmod", "write"])
        assert all(e.entry is None for e in events)
        assert handle.get_new_events() == []  # each event is delivered once

        sbx.files.write(str(work / "w.txt"), "again")
        assert WRITE in kinds(collect(handle, lambda ev: WRITE in kinds(ev, "w.txt")), "w.txt")

        sbx.files.rename(str(work / "w.txt"), str(work / "w2.txt"))
        events = collect(handle, lambda ev: RENAME in kinds(ev, "w.txt") and CREATE in kinds(ev, "w2.txt"))
        assert RENAME in kinds(events, "w.txt") and CREATE in kinds(events, "w2.txt")

        sbx.files.remove(str(work / "w2.txt"))
        events = collect(handle, lambda ev: REMOVE in kinds(ev, "w2.txt"))
        assert REMOVE in kinds(events, "w2.txt")

        sbx.files.make_dir(str(work / "subdir"))
        events = collect(handle, lambda ev: CREATE in kinds(ev, "subdir"))
        assert CREATE in kinds(events, "subdir")
        # Not recursive: writes inside the new directory are not reported.
        sbx.files.write(str(work / "subdir" / "inner.txt"), "x")
        time.sleep(0.2)
        assert not [e for e in handle.get_new_events() if "inner" in e.name]
    finally:
        handle.stop()
    with pytest.raises(SandboxException, match="already stopped"):
        handle.get_new_events()


def test_sync_watch_recursive_with_entries(sbx, work):
    (work / "pre").mkdir()
    handle = sbx.files.watch_dir(str(work), recursive=True, include_entry=True)
    try:
        sbx.files.write(str(work / "pre" / "nested.txt"), "nested")
        events = collect(handle, lambda ev: WRITE in kinds(ev, "pre/nested.txt"))
        # §7.7 step 6: names are relative to the watched directory.
        assert kinds(events, "pre/nested.txt")[0] == CREATE
        created = next(e for e in events if e.name == "pre/nested.txt" and e.type == CREATE)
        assert created.entry is not None
        assert (created.entry.path, created.entry.name, created.entry.type) == (
            str(work / "pre" / "nested.txt"), "nested.txt", FileType.FILE,
        )
        # The entry is read when the event is handled: only the WRITE (after the upload's chown) is sure
        # to see the final owner; the CREATE may be stat-ed before the chown.
        written = next(e for e in events if e.name == "pre/nested.txt" and e.type == WRITE)
        assert written.entry is not None and written.entry.owner == "user"

        # A directory created after the watch started is watched too, once its CREATE was seen.
        sbx.files.make_dir(str(work / "later"))
        collect(handle, lambda ev: CREATE in kinds(ev, "later"))
        sbx.files.write(str(work / "later" / "x.txt"), "x")
        events = collect(handle, lambda ev: WRITE in kinds(ev, "later/x.txt"))
        assert CREATE in kinds(events, "later/x.txt") and WRITE in kinds(events, "later/x.txt")

        sbx.files.remove(str(work / "pre" / "nested.txt"))
        events = collect(handle, lambda ev: REMOVE in kinds(ev, "pre/nested.txt"))
        removed = [e for e in events if e.name == "pre/nested.txt" and e.type == REMOVE]
        assert removed and removed[0].entry is None  # §7.7 step 7: never an entry for REMOVE
    finally:
        handle.stop()


def test_sync_watch_errors(sbx, work):
    (work / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundException):
        sbx.files.watch_dir(str(work / "missing"))
    with pytest.raises(SandboxException):
        sbx.files.watch_dir(str(work / "file.txt"))


def test_async_streaming_watch(debug_env, work):
    async def scenario():
        sandbox = await AsyncSandbox.create()
        events: list = []
        exits: list = []
        arrived = asyncio.Event()

        def on_event(event):
            events.append(event)
            arrived.set()

        async def wait_for(pred, timeout=5.0):
            async def loop():
                while not pred(events):
                    arrived.clear()
                    await arrived.wait()

            await asyncio.wait_for(loop(), timeout)

        (work / "sub").mkdir()
        handle = await sandbox.files.watch_dir(
            str(work), on_event, on_exit=exits.append, recursive=True, include_entry=True
        )
        try:
            await sandbox.files.write(str(work / "a.txt"), "streamed")
            await wait_for(lambda ev: WRITE in kinds(ev, "a.txt"))
            assert kinds(events, "a.txt")[0] == CREATE
            entry = next(e.entry for e in events if e.name == "a.txt" and e.type == WRITE)
            assert entry is not None and entry.path == str(work / "a.txt") and entry.size == len("streamed")

            await sandbox.files.write(str(work / "sub" / "b.txt"), "nested")
            await wait_for(lambda ev: WRITE in kinds(ev, "sub/b.txt"))

            await sandbox.files.rename(str(work / "a.txt"), str(work / "c.txt"))
            await wait_for(lambda ev: RENAME in kinds(ev, "a.txt") and CREATE in kinds(ev, "c.txt"))

            await sandbox.files.remove(str(work / "c.txt"))
            await wait_for(lambda ev: REMOVE in kinds(ev, "c.txt"))
            assert all(e.entry is None for e in events if e.type in (REMOVE, RENAME))
            assert exits == []  # still running
        finally:
            await handle.stop()
        assert exits == [None]

        # Many concurrent calls over the SDK's pooled connections.
        paths = [str(work / "many" / f"f{i}.txt") for i in range(24)]
        await asyncio.gather(*(sandbox.files.write(p, p) for p in paths))
        assert await asyncio.gather(*(sandbox.files.read(p) for p in paths)) == paths
        infos = await asyncio.gather(*(sandbox.files.get_info(p) for p in paths))
        assert [i.size for i in infos] == [len(p) for p in paths]

        # A missing directory fails the stream's start with not_found.
        with pytest.raises(FileNotFoundException):
            await sandbox.files.watch_dir(str(work / "missing"), on_event)

    asyncio.run(scenario())


def test_async_watch_ends_at_its_timeout(debug_env, work):
    async def scenario():
        sandbox = await AsyncSandbox.create()
        ended = asyncio.Event()
        exits: list = []

        def on_exit(err):
            exits.append(err)
            ended.set()

        await sandbox.files.watch_dir(str(work), lambda e: None, on_exit=on_exit, timeout=1)
        await asyncio.wait_for(ended.wait(), 10)
        assert exits and exits[0] is not None  # deadline_exceeded -> TimeoutException

    asyncio.run(scenario())


# --- as root ----------------------------------------------------------------------------------------


@pytest.fixture
def root_scratch() -> Iterator[str]:
    name = f"envd-sdk-root-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield name
    shutil.rmtree(Path("/root") / name, ignore_errors=True)


def test_operations_as_root(sbx, root_scratch, work):
    info = sbx.files.write(f"{root_scratch}/r.txt", "as root", user="root")
    assert info.path == f"/root/{root_scratch}/r.txt"  # relative to root's home
    assert owner_of(Path(info.path)) == ("root", "root")
    assert owner_of(Path(f"/root/{root_scratch}")) == ("root", "root")
    assert sbx.files.read(f"{root_scratch}/r.txt", user="root") == "as root"

    got = sbx.files.get_info(f"{root_scratch}/r.txt", user="root")
    assert (got.path, got.owner, got.group, got.mode) == (info.path, "root", "root", 0o644)
    assert sbx.files.exists(f"{root_scratch}/r.txt", user="root")
    assert not sbx.files.exists(f"{root_scratch}/r.txt")  # as `user` the same relative path is elsewhere

    assert sbx.files.make_dir(f"{root_scratch}/d", user="root") is True
    assert owner_of(Path(f"/root/{root_scratch}/d")) == ("root", "root")
    listed = sbx.files.list(root_scratch, user="root")
    assert [(e.name, e.owner) for e in listed] == [("d", "root"), ("r.txt", "root")]

    # Absolute paths as root: owned by root even inside /home/user.
    sbx.files.write_files([{"path": str(work / "by-root.txt"), "data": "r"}], user="root")
    assert owner_of(work / "by-root.txt") == ("root", "root")
    # ...and a later write as `user` hands the file over (§3.7.4 step 3).
    sbx.files.write(str(work / "by-root.txt"), "u")
    assert owner_of(work / "by-root.txt") == ("user", "user")

    moved = sbx.files.rename(f"{root_scratch}/r.txt", f"{root_scratch}/d/r2.txt", user="root")
    assert moved.path == f"/root/{root_scratch}/d/r2.txt"
    sbx.files.remove(f"{root_scratch}/d", user="root")
    assert not Path(f"/root/{root_scratch}/d").exists()
