"""`sandbox.files` through the unmodified JS SDK (npm e2b 2.51.0) in debug mode against a real envd.

The Node project in tests/e2e/js runs one script (files.mjs) that exercises write/read/list/watch
and prints a JSON report; the tests below assert on it, one concern each.
"""

from __future__ import annotations

import os
import pwd
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.js_project import ok, run_script

pytestmark = pytest.mark.sdk

@pytest.fixture(scope="module")
def js_scratch(sandbox_user) -> Iterator[tuple[Path, str]]:
    pw = pwd.getpwnam(sandbox_user)
    home = Path(pw.pw_dir)
    d = home / f"envd-js-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    os.chown(d, pw.pw_uid, pw.pw_gid)
    yield d, str(d.relative_to(home))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def report(daemon, js_scratch) -> dict:
    scratch, rel = js_scratch
    data = run_script("files.mjs", daemon.url, 120, ENVD_TEST_DIR=str(scratch), ENVD_TEST_REL=rel)
    data["_dir"], data["_rel"] = str(scratch), rel
    return data


def test_debug_sandbox(report):
    assert report["sandboxId"] == "debug_sandbox_id"


def test_write_and_read_formats(report):
    ok(report, "write", "readText", "readRelative", "readBytes", "readBlob", "readStream", "empty")
    d = report["_dir"]
    assert report["write"] == {"name": "hello.txt", "type": "file", "path": f"{d}/hello.txt"}
    assert report["readText"] == report["readRelative"] == report["readBlob"] == report["readStream"] == "hello from js"
    assert report["readBytes"] == list(b"hello from js")
    # JS relies on Content-Length: 0 for empty files (sdk-expectations §3.3).
    assert report["empty"] == {"text": "", "bytes": 0, "gzipText": ""}


def test_multi_file_write_creates_dirs(report):
    ok(report, "writeMany")
    d = report["_dir"]
    assert [(e["name"], e["path"], e["type"]) for e in report["writeMany"]] == [
        ("a.txt", f"{d}/nested/a.txt", "file"),
        ("b.bin", f"{d}/nested/deeper/b.bin", "file"),
        ("blob.txt", f"{d}/blob.txt", "file"),
    ]
    assert Path(d, "nested/deeper/b.bin").read_bytes() == bytes([0, 1, 2, 255])
    assert Path(d, "blob.txt").read_text() == "from a blob"
    assert Path(d, "nested").stat().st_uid == pwd.getpwnam("user").pw_uid


def test_gzip_octet_stream_and_metadata(report):
    ok(report, "octetGzipMetadata", "getInfo")
    r = report["octetGzipMetadata"]
    assert r["info"]["metadata"] == {"origin": "js"}
    assert r["readOk"] is True
    info = report["getInfo"]
    assert info["metadata"] == {"origin": "js"}
    assert (info["type"], info["size"], info["mode"], info["permissions"]) == ("file", 5000, 0o644, "-rw-r--r--")
    assert (info["owner"], info["group"]) == ("user", "user")
    assert info["modifiedTime"] and info["symlinkTarget"] is None


def test_refused_upload_is_an_sdk_error(report):
    ok(report, "writeOntoDir")
    # §3.7.4 step 2: 400 "path is a directory"; JS maps 400 to InvalidArgumentError.
    assert report["writeOntoDir"].startswith("InvalidArgumentError:"), report["writeOntoDir"]
    assert "is a directory" in report["writeOntoDir"]


def test_list_exists_and_mutations(report):
    ok(report, "list1", "list2", "exists", "makeDir", "rename", "remove", "readMissing")
    d = report["_dir"]
    # list1 was taken before the other steps created more entries.
    assert [(e["name"], e["type"]) for e in report["list1"]] == [
        ("blob.txt", "file"), ("empty.txt", "file"), ("gz.txt", "file"), ("hello.txt", "file"), ("nested", "dir"),
    ]
    assert report["list2"] == [
        f"{d}/blob.txt", f"{d}/empty.txt", f"{d}/gz.txt", f"{d}/hello.txt",
        f"{d}/nested", f"{d}/nested/a.txt", f"{d}/nested/deeper",
    ]
    assert report["exists"] == {"file": True, "missing": False}
    assert report["makeDir"] == [True, False]
    assert report["rename"]["path"] == f"{d}/made/hello2.txt"
    assert report["remove"] is False
    assert report["readMissing"] == "FileNotFoundError"


def test_streaming_watch(report):
    ok(report, "watch", "watchMissing")
    events = report["watch"]["events"]
    mine = [e for e in events if e["name"] == "watched/w.txt"]
    assert mine and mine[0]["type"] == "create", events
    assert "write" in [e["type"] for e in mine]
    writes = [e for e in mine if e["type"] == "write"]
    assert writes[0]["entryPath"] == f"{report['_dir']}/watched/w.txt"
    assert any(e["name"] == "watched" and e["type"] == "create" for e in events), events
    # stop() aborts client-side, so onExit may carry an abort error; never a protocol error (§1.2).
    assert "EndStreamResponse" not in str(report["watch"]["exitError"])
    assert report["watchMissing"] == "FileNotFoundError"


def test_unsigned_download_url(report):
    ok(report, "downloadUrl")
    r = report["downloadUrl"]
    assert "dl+file.txt" in r["url"]
    assert (r["status"], r["body"]) == (200, "url body")
