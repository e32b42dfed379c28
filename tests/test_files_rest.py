"""GET/POST /files and POST /files/compose through a real daemon (spec/envd.md §2.6, §3.6-3.8)."""

from __future__ import annotations

import email.utils
import gzip
import os
import pwd
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest

from envd.auth.signatures import sign

HOME = Path("/home/user")


@pytest.fixture
def client(daemon):
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        yield c


@pytest.fixture
def work(user_home: Path) -> Path:
    return user_home


def rel(path: Path) -> str:
    return str(path.relative_to(HOME))


def owner(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


def user_ids() -> tuple[int, int]:
    pw = pwd.getpwnam("user")
    return pw.pw_uid, pw.pw_gid


def error(r: httpx.Response) -> tuple[int, str]:
    assert r.headers["content-type"] == "application/json; charset=utf-8", r.text
    body = r.json()
    assert body["code"] == r.status_code
    return r.status_code, body["message"]


def get(client, path, headers=None, **params):
    return client.get("/files", params={"path": path, **params}, headers=headers or {})


def upload_multipart(client, parts, params=None, headers=None):
    return client.post("/files", params=params or {}, files=parts, headers=headers or {})


def upload_raw(client, path, data, headers=None, **params):
    return client.post(
        "/files",
        params={"path": path, **params},
        content=data,
        headers={"Content-Type": "application/octet-stream", **(headers or {})},
    )


# --- download ---------------------------------------------------------------------------------------


def test_download_identity_headers_and_body(client, work):
    f = work / "hello.txt"
    f.write_text("hello world\n")
    r = get(client, str(f), {"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.content == b"hello world\n"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-length"] == "12"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["vary"].startswith("Accept-Encoding")
    assert r.headers["content-disposition"] == "inline; filename=hello.txt"
    assert email.utils.parsedate_to_datetime(r.headers["last-modified"]).timestamp() == int(f.stat().st_mtime)
    assert "content-encoding" not in r.headers and "etag" not in r.headers


def test_download_relative_path_resolves_against_home(client, work):
    (work / "r.txt").write_text("relative")
    assert get(client, rel(work / "r.txt")).text == "relative"
    assert get(client, f"~/{rel(work / 'r.txt')}").text == "relative"


def test_download_content_type_by_extension_else_sniffed(client, work):
    (work / "data.json").write_text("{}")
    (work / "noext-text").write_text("just words\n")
    (work / "noext-bin").write_bytes(b"\x00\x01\x02binary")
    (work / "page").write_text("<!DOCTYPE html><html></html>")
    (work / "img.png").write_bytes(b"not really a png")
    h = {"Accept-Encoding": "identity"}
    assert get(client, str(work / "data.json"), h).headers["content-type"] == "application/json"
    assert get(client, str(work / "noext-text"), h).headers["content-type"] == "text/plain; charset=utf-8"
    assert get(client, str(work / "noext-bin"), h).headers["content-type"] == "application/octet-stream"
    assert get(client, str(work / "page"), h).headers["content-type"] == "text/html; charset=utf-8"
    assert get(client, str(work / "img.png"), h).headers["content-type"] == "image/png"  # extension wins


@pytest.mark.parametrize(
    "name, disposition",
    [
        ("my document.pdf", 'inline; filename="my document.pdf"'),
        ('file"name.txt', 'inline; filename="file\\"name.txt"'),
        ("文档.pdf", "inline; filename*=utf-8''%E6%96%87%E6%A1%A3.pdf"),
    ],
)
def test_download_content_disposition_forms(client, work, name, disposition):
    (work / name).write_text("x")
    r = get(client, str(work / name))
    assert r.status_code == 200 and r.headers["content-disposition"] == disposition


def raw_get(daemon, path, accept):
    with httpx.Client() as c:
        req = c.build_request("GET", f"{daemon.url}/files", params={"path": path}, headers={"Accept-Encoding": accept})
        r = c.send(req, stream=True)
        body = b"".join(r.iter_raw())
        r.close()
    return r, body


@pytest.mark.parametrize("accept", ["gzip", "gzip, deflate", "br;q=1, gzip;q=0.5", "*, identity;q=0"])
def test_download_gzip_is_streamed_compressed(daemon, work, accept):
    payload = b"compress me please " * 100_000 + os.urandom(300_000)
    (work / "big.log").write_bytes(payload)
    r, body = raw_get(daemon, str(work / "big.log"), accept)
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "content-length" not in r.headers and "last-modified" not in r.headers
    assert r.headers["content-type"] == "application/octet-stream"  # `.log` is not a known extension
    assert gzip.decompress(body) == payload
    assert len(body) < len(payload) * 0.5


def test_download_gzip_content_type_from_extension(daemon, work):
    (work / "t.txt").write_text("abc")
    r, body = raw_get(daemon, str(work / "t.txt"), "gzip")
    assert r.headers["content-type"] == "text/plain; charset=utf-8" and gzip.decompress(body) == b"abc"


def test_download_empty_file_has_content_length_zero(daemon, work):
    (work / "empty").write_bytes(b"")
    for accept in ("identity", "gzip, deflate", "gzip"):
        r, body = raw_get(daemon, str(work / "empty"), accept)
        assert r.status_code == 200 and body == b""
        assert r.headers["content-length"] == "0"
    # Identity refused: a (tiny) gzip body is the only answer left.
    r, body = raw_get(daemon, str(work / "empty"), "gzip, identity;q=0")
    assert r.headers["content-encoding"] == "gzip" and gzip.decompress(body) == b""


def test_download_single_range(client, work):
    (work / "digits").write_bytes(b"0123456789")
    r = get(client, str(work / "digits"), {"Range": "bytes=2-5", "Accept-Encoding": "gzip"})
    assert r.status_code == 206 and r.content == b"2345"
    assert r.headers["content-range"] == "bytes 2-5/10"
    assert r.headers["content-length"] == "4"
    assert "content-encoding" not in r.headers  # Range forces identity (§3.6 step 9)
    r = get(client, str(work / "digits"), {"Range": "bytes=-3"})
    assert (r.status_code, r.content) == (206, b"789")


def test_download_multiple_ranges_are_multipart_byteranges(client, work):
    (work / "digits").write_bytes(b"0123456789")
    r = get(client, str(work / "digits"), {"Range": "bytes=0-1,7-"})
    assert r.status_code == 206
    kind, _, boundary = r.headers["content-type"].partition("; boundary=")
    assert kind == "multipart/byteranges"
    assert int(r.headers["content-length"]) == len(r.content)
    parts = [p for p in r.content.split(f"--{boundary}".encode()) if p.strip(b"\r\n-")]
    assert len(parts) == 2
    assert b"Content-Range: bytes 0-1/10" in parts[0] and parts[0].endswith(b"\r\n\r\n01\r\n")
    assert b"Content-Range: bytes 7-9/10" in parts[1] and parts[1].endswith(b"\r\n\r\n789\r\n")


def test_download_unsatisfiable_range(client, work):
    (work / "digits").write_bytes(b"0123456789")
    r = get(client, str(work / "digits"), {"Range": "bytes=50-60"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */10"
    r = get(client, str(work / "digits"), {"Range": "lines=1-2"})
    assert r.status_code == 416


def test_download_if_modified_since(client, work):
    f = work / "cached.txt"
    f.write_text("cached")
    mtime = int(f.stat().st_mtime)
    r = get(client, str(f), {"If-Modified-Since": email.utils.formatdate(mtime, usegmt=True)})
    assert r.status_code == 304 and r.content == b""
    assert "content-length" not in r.headers or r.headers["content-length"] == "0"
    r = get(client, str(f), {"If-Modified-Since": email.utils.formatdate(mtime - 10, usegmt=True)})
    assert (r.status_code, r.text) == (200, "cached")


def test_download_errors(client, work):
    assert error(get(client, str(work))) == (400, f"path '{work}' is a directory")
    assert error(get(client, str(work / "missing.txt"))) == (404, f"path '{work / 'missing.txt'}' does not exist")
    (work / "f.txt").write_text("x")
    r = get(client, str(work / "f.txt"), {"Accept-Encoding": "br, identity;q=0"})
    assert error(r) == (406, "error parsing Accept-Encoding: no acceptable encoding found, supported: [gzip]")
    r = get(client, str(work / "f.txt"), {"Accept-Encoding": "gzip, identity;q=0", "Range": "bytes=0-0"})
    assert error(r) == (406, "identity encoding not acceptable for Range or conditional request")
    r = get(client, "~root/x")
    assert error(r)[0] == 400 and "error expanding and resolving path '~root/x'" in r.json()["message"]
    # An empty path is the home directory (§5).
    assert error(get(client, "")) == (400, "path '/home/user' is a directory")
    assert client.head("/files", params={"path": str(work / "f.txt")}).status_code == 405


def test_download_username_picks_the_home(client, work):
    name = f"envd-files-{uuid.uuid4().hex[:8]}"
    Path("/root", name).write_text("root's")
    try:
        assert get(client, name, username="root").text == "root's"
        assert get(client, name).status_code == 404  # as the default user: /home/user/<name>
    finally:
        Path("/root", name).unlink()
    r = get(client, "x", username="nobody-such-user")
    assert error(r) == (401, "error looking up user 'nobody-such-user': user: unknown user nobody-such-user")
    assert error(get(client, "x", username=""))[0] == 401  # present but empty is not the default user


def test_download_bad_signature_expiration_is_a_binding_error(client, work):
    r = get(client, str(work), signature_expiration="soon")
    assert r.status_code == 400
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == (
        'Invalid format for parameter signature_expiration: strconv.ParseInt: parsing "soon": invalid syntax\n'
    )


# --- upload -----------------------------------------------------------------------------------------


def test_upload_multipart_many_parts_with_full_path_filenames(client, work):
    uid, gid = user_ids()
    r = upload_multipart(
        client,
        [
            ("file", (str(work / "abs" / "a.txt"), b"A")),
            ("file", (f"{rel(work)}/rel/deeper/b.bin", b"B\x00")),
            ("other", (None, b"a plain form field, skipped")),
            ("file", (f"{rel(work)}/c d.txt", b"C")),
        ],
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == [
        {"path": str(work / "abs" / "a.txt"), "name": "a.txt", "type": "file"},
        {"path": str(work / "rel" / "deeper" / "b.bin"), "name": "b.bin", "type": "file"},
        {"path": str(work / "c d.txt"), "name": "c d.txt", "type": "file"},
    ]
    assert (work / "abs" / "a.txt").read_bytes() == b"A"
    assert (work / "rel" / "deeper" / "b.bin").read_bytes() == b"B\x00"
    for f in ("abs/a.txt", "rel/deeper/b.bin", "c d.txt"):
        assert owner(work / f) == (uid, gid)
        assert (work / f).stat().st_mode & 0o777 == 0o644
    for d in ("abs", "rel", "rel/deeper"):
        assert owner(work / d) == (uid, gid) and (work / d).stat().st_mode & 0o777 == 0o755


def test_upload_filenames_escaped_by_the_client_are_restored(client, work):
    # httpx escapes `"` as %22, control characters as %XX and `\` as `\\` (HTML5 form encoding).
    names = ['quote"d.txt', "back\\slash.txt", "new\nline.txt", "100%.txt"]
    r = upload_multipart(client, [("file", (str(work / n), n.encode())) for n in names])
    assert r.status_code == 200, r.text
    assert [e["name"] for e in r.json()] == names
    for n in names:
        assert (work / n).read_bytes() == n.encode()


def test_upload_path_query_applies_to_the_part(client, work):
    r = upload_multipart(client, [("file", ("ignored-name.txt", b"via path"))], params={"path": str(work / "p.txt")})
    assert r.status_code == 200 and r.json()[0]["path"] == str(work / "p.txt")
    assert (work / "p.txt").read_text() == "via path" and not (work / "ignored-name.txt").exists()


def test_upload_relative_filename_without_directories_lands_in_home(client):
    name = f"envd-files-{uuid.uuid4().hex[:8]}.txt"
    try:
        r = upload_multipart(client, [("file", (name, b"home"))])
        assert r.json() == [{"path": f"/home/user/{name}", "name": name, "type": "file"}]
    finally:
        Path("/home/user", name).unlink(missing_ok=True)


def test_upload_multipart_without_file_parts_is_an_empty_list(client):
    r = client.post("/files", data={"field": "value"}, files=[("notfile", ("x.txt", b"x"))])
    assert (r.status_code, r.json()) == (200, [])


def test_upload_octet_stream(client, work):
    r = upload_raw(client, str(work / "raw" / "r.bin"), b"\x00raw\xff")
    assert r.status_code == 200
    assert r.json() == [{"path": str(work / "raw" / "r.bin"), "name": "r.bin", "type": "file"}]
    assert (work / "raw" / "r.bin").read_bytes() == b"\x00raw\xff"
    assert owner(work / "raw") == user_ids()
    r = upload_raw(client, str(work / "empty.bin"), b"")
    assert r.status_code == 200 and (work / "empty.bin").read_bytes() == b""


def test_upload_chunked_octet_stream(client, work):
    payload = os.urandom(3 * 1024 * 1024 + 11)

    def chunks():
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    r = upload_raw(client, str(work / "chunked.bin"), chunks())
    assert r.status_code == 200 and (work / "chunked.bin").read_bytes() == payload


def test_upload_gzip_bodies(client, work):
    payload = b"gzipped upload " * 50_000
    r = upload_raw(client, str(work / "g.txt"), gzip.compress(payload), {"Content-Encoding": "gzip"})
    assert r.status_code == 200 and (work / "g.txt").read_bytes() == payload
    boundary = "envdboundary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{work / "gm.txt"}"\r\n\r\n'.encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = client.post(
        "/files",
        content=gzip.compress(form),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Encoding": "GZIP"},
    )
    assert r.status_code == 200, r.text
    assert (work / "gm.txt").read_bytes() == payload


def test_upload_bad_gzip(client, work):
    r = upload_raw(client, str(work / "bad.txt"), b"definitely not gzip", {"Content-Encoding": "gzip"})
    assert error(r) == (400, "error decompressing request body: failed to create gzip reader: gzip: invalid header")
    r = upload_raw(client, str(work / "bad.txt"), b"", {"Content-Encoding": "gzip"})
    assert error(r) == (400, "error decompressing request body: failed to create gzip reader: EOF")
    truncated = gzip.compress(os.urandom(200_000))[:-1000]
    r = upload_raw(client, str(work / "bad.txt"), truncated, {"Content-Encoding": "gzip"})
    assert error(r) == (400, "error decompressing request body: unexpected EOF")
    assert not (work / "bad.txt").exists()  # nothing half-written
    r = upload_raw(client, str(work / "bad.txt"), b"x", {"Content-Encoding": "br"})
    assert error(r) == (400, "error decompressing request body: unsupported Content-Encoding: br, supported: [gzip]")


def test_upload_content_type_errors(client, work):
    expected = "unsupported content type: {}, expected multipart/form-data or application/octet-stream"
    r = client.post("/files", params={"path": str(work / "x")}, content=b"x", headers={"Content-Type": "text/plain"})
    assert error(r) == (400, expected.format("text/plain"))
    r = client.post("/files", params={"path": str(work / "x")}, content=b"x")  # no Content-Type at all (Q6)
    assert error(r) == (400, expected.format(""))
    r = client.post("/files", content=b"x", headers={"Content-Type": "application/octet-stream"})
    assert error(r) == (400, "path query parameter is required for raw body upload")
    r = client.post("/files", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert error(r) == (500, "error parsing multipart form: no multipart boundary param in Content-Type")
    r = client.post("/files", content=b"x", headers={"Content-Type": "multipart/related; boundary=x"})
    assert error(r)[0] == 500
    assert not (work / "x").exists()


def test_upload_malformed_multipart_leaves_no_partial_file(client, work):
    body = (
        f'--b\r\nContent-Disposition: form-data; name="file"; filename="{work / "cut.bin"}"\r\n\r\n'.encode()
        + b"partial data without the closing boundary"
    )
    r = client.post("/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert error(r) == (500, "error reading form: unexpected EOF")
    assert not (work / "cut.bin").exists()


def test_upload_part_without_filename(client):
    body = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\ndata\r\n--b--\r\n'
    r = client.post("/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    status, message = error(r)
    assert status == 400 and message.startswith("error getting multipart custom part file name: ")


def test_upload_duplicate_paths(client, work):
    parts = [
        ("file", (str(work / "one.txt"), b"first")),
        ("file", (f"{rel(work)}/one.txt", b"second")),  # the same file, spelled relative
    ]
    r = upload_multipart(client, parts)
    assert error(r) == (
        400,
        f"you cannot upload multiple files to the same path '{work / 'one.txt'}' in one upload request, "
        "only the first specified file was uploaded",
    )
    assert (work / "one.txt").read_text() == "first"
    parts = [("file", (str(work / n), n.encode())) for n in ("a", "b", "c", "a")]
    status, message = error(upload_multipart(client, parts))
    assert status == 400
    assert message.endswith(f", also the following files were uploaded: {work / 'b'}, {work / 'c'}")
    # With the `path` query every part has the same target.
    r = upload_multipart(client, [("file", ("x", b"1")), ("file", ("y", b"2"))], params={"path": str(work / "q.txt")})
    assert error(r)[0] == 400 and (work / "q.txt").read_text() == "1"


def test_upload_onto_existing_file_takes_ownership_and_keeps_mode(client, work):
    f = work / "rootfile.txt"
    f.write_text("a long original content")
    os.chown(f, 0, 0)
    f.chmod(0o600)
    r = upload_raw(client, str(f), b"short")
    assert r.status_code == 200
    assert f.read_bytes() == b"short"
    assert owner(f) == user_ids() and f.stat().st_mode & 0o777 == 0o600


def test_upload_as_root(client, work):
    r = upload_raw(client, str(work / "by-root" / "r.txt"), b"r", username="root")
    assert r.status_code == 200
    assert owner(work / "by-root" / "r.txt") == (0, 0) and owner(work / "by-root") == (0, 0)
    r = upload_raw(client, str(work / "by-root" / "r.txt"), b"u")
    assert owner(work / "by-root" / "r.txt") == user_ids()
    r = upload_raw(client, str(work / "x.txt"), b"x", username="nobody-such-user")
    assert error(r) == (401, "error looking up user 'nobody-such-user': user: unknown user nobody-such-user")
    assert not (work / "x.txt").exists()


def test_upload_target_errors(client, work):
    (work / "adir").mkdir()
    assert error(upload_raw(client, str(work / "adir"), b"x")) == (400, f"path is a directory: {work / 'adir'}")
    (work / "afile").write_text("f")
    r = upload_raw(client, str(work / "afile" / "below.txt"), b"x")
    assert error(r) == (500, f"error ensuring directories: path is a file: {work / 'afile'}")
    r = upload_raw(client, "~root/x", b"x")
    assert error(r)[0] == 400 and r.json()["message"].startswith("error resolving path: ")


def test_upload_metadata_set_replaced_and_cleared(client, work):
    f = work / "meta.txt"
    r = upload_raw(client, str(f), b"m", {"X-Metadata-Project": "envd", "x-metadata-Mixed-Case": "Value With Spaces"})
    assert r.status_code == 200
    assert r.json() == [
        {
            "path": str(f),
            "name": "meta.txt",
            "type": "file",
            "metadata": {"project": "envd", "mixed-case": "Value With Spaces"},
        }
    ]
    assert os.getxattr(f, "user.e2b.project") == b"envd"
    os.setxattr(f, "user.unrelated", b"kept")
    r = upload_multipart(client, [("file", (str(f), b"m2"))], headers={"X-Metadata-Other": "1"})
    assert r.json()[0]["metadata"] == {"other": "1"}
    r = upload_raw(client, str(f), b"m3")  # no metadata headers: the set is cleared
    assert "metadata" not in r.json()[0]
    assert [a for a in os.listxattr(f) if a.startswith("user.e2b.")] == []
    assert os.getxattr(f, "user.unrelated") == b"kept"


def test_upload_metadata_applies_to_every_part(client, work):
    r = upload_multipart(
        client,
        [("file", (str(work / "m1"), b"1")), ("file", (str(work / "m2"), b"2"))],
        headers={"X-Metadata-Batch": "7"},
    )
    assert [e["metadata"] for e in r.json()] == [{"batch": "7"}, {"batch": "7"}]


def test_upload_invalid_metadata(client, work):
    r = client.post(
        "/files",
        params={"path": str(work / "bad-meta.txt")},
        content=b"x",
        headers=[(b"Content-Type", b"application/octet-stream"), (b"X-Metadata-k", b"caf\xc3\xa9")],
    )
    status, message = error(r)
    assert status == 400 and message.startswith("invalid metadata: ") and "0xc3 at offset 3" in message
    r = upload_raw(client, str(work / "bad-meta.txt"), b"x", {"X-Metadata-" + "k" * 247: "v"})
    assert error(r)[0] == 400 and "limit is 246" in r.json()["message"]
    too_much = {f"X-Metadata-k{i:03d}": "v" * 40 for i in range(100)}  # 100 * (9 + 4 + 40) = 5300 bytes
    r = upload_raw(client, str(work / "bad-meta.txt"), b"x", too_much)
    assert error(r)[0] == 400 and "limit is 4096" in r.json()["message"]
    assert not (work / "bad-meta.txt").exists()


def test_upload_refused_after_a_large_body_is_still_answered(client, work):
    # The body is read to its end before answering, so a client that sends everything first sees the error.
    (work / "isdir").mkdir()
    r = upload_raw(client, str(work / "isdir"), os.urandom(8 * 1024 * 1024))
    assert error(r) == (400, f"path is a directory: {work / 'isdir'}")


def test_upload_client_disconnect_removes_the_partial_file(daemon, work):
    target = work / "abandoned.bin"
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(
            f"POST /files?path={target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: 10000000\r\n\r\n".encode()
            + b"x" * 3_000_000
        )
        deadline = time.monotonic() + 5
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert target.exists()  # being written
    deadline = time.monotonic() + 5
    while target.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not target.exists()
    assert httpx.get(f"{daemon.url}/health").status_code == 204


def open_files(daemon) -> list[str]:
    fd_dir = f"/proc/{daemon.process.pid}/fd"
    links = []
    for fd in os.listdir(fd_dir):
        try:
            links.append(os.readlink(f"{fd_dir}/{fd}"))
        except OSError:
            pass
    return links


@pytest.mark.parametrize("accept", ["identity", "gzip"])
def test_download_client_disconnect_closes_the_file(daemon, work, accept):
    big = work / f"abandoned-{accept}.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(32 * 1024 * 1024))
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(f"GET /files?path={big} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {accept}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert str(big) in open_files(daemon)
    deadline = time.monotonic() + 5
    while str(big) in open_files(daemon) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert str(big) not in open_files(daemon)
    assert httpx.get(f"{daemon.url}/health").status_code == 204


def test_large_transfers_keep_daemon_memory_flat(daemon, client, work):
    def write_random(path: Path, size: int) -> None:
        with open(path, "wb") as f:
            for _ in range(size // (8 << 20)):
                f.write(os.urandom(8 << 20))

    def transfer(src: Path, size: int, sample: Callable[[], None]) -> None:
        """Upload `src` and download it plainly and gzipped, sampling the daemon's RSS as it goes."""

        def chunks():
            with open(src, "rb") as f:
                while block := f.read(1 << 20):
                    if f.tell() % (8 << 20) == 0:
                        sample()
                    yield block

        r = upload_raw(client, str(work / "up.bin"), chunks())
        assert r.status_code == 200
        assert subprocess.run(["cmp", str(src), str(work / "up.bin")]).returncode == 0
        for accept in ("identity", "gzip"):
            got = 0
            with client.stream("GET", "/files", params={"path": str(src)}, headers={"Accept-Encoding": accept}) as resp:
                for i, chunk in enumerate(resp.iter_bytes(1 << 20)):
                    got += len(chunk)
                    if i % 8 == 0:
                        sample()
            assert got == size

    # A first, smaller round lets the transfer threads set up their allocator arenas: that one-time cost
    # depends on how many threads ran, not on sizes, and is not what this test is about.
    warm = work / "warm.bin"
    write_random(warm, 16 << 20)
    transfer(warm, 16 << 20, lambda: None)
    size = 96 * 1024 * 1024
    src = work / "src.bin"
    write_random(src, size)
    before = daemon.rss_bytes()
    peak = before

    def sample() -> None:
        nonlocal peak
        peak = max(peak, daemon.rss_bytes())

    transfer(src, size, sample)
    print(f"RSS grew by {(peak - before) >> 20} MiB")
    assert peak - before < 20 * 1024 * 1024, f"RSS grew by {(peak - before) >> 20} MiB"


# --- ENOSPC -----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"cannot mount a tmpfs: {done.stderr.strip()}")
        pytest.skip(f"mounting a tmpfs is impossible here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_disk_full_is_507_and_leaves_no_partial_file(client, tiny_fs):
    before = used_bytes(tiny_fs)
    payload = os.urandom(2 * 1024 * 1024)
    r = upload_raw(client, str(tiny_fs / "big.bin"), payload)
    assert error(r) == (507, f"attempted to write {len(payload)} bytes: not enough disk space available")
    assert not (tiny_fs / "big.bin").exists()
    assert used_bytes(tiny_fs) == before  # the partial data was freed

    def chunks():
        yield payload[:1_000_000]
        yield payload[1_000_000:]

    r = upload_raw(client, str(tiny_fs / "chunked.bin"), chunks())  # no Content-Length
    assert error(r) == (507, "not enough disk space available")
    assert os.listdir(tiny_fs) == []

    # Multipart: the file that fit stays, the one that did not is removed.
    parts = [("file", (str(tiny_fs / "small.txt"), b"fits")), ("file", (str(tiny_fs / "huge"), payload))]
    r = upload_multipart(client, parts)
    assert r.status_code == 507
    assert os.listdir(tiny_fs) == ["small.txt"]

    r = upload_raw(client, str(tiny_fs / "after.txt"), b"space is back")
    assert r.status_code == 200 and (tiny_fs / "after.txt").read_text() == "space is back"


def test_out_of_inodes_is_507(client, tmp_path):
    mnt = tmp_path / "few-inodes"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=4", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is impossible here: {done.stderr.strip()}")
    try:
        created = 0
        with pytest.raises(OSError):  # fill the inode table
            while created < 10:
                (mnt / f"f{created}").touch()
                created += 1
        r = upload_raw(client, str(mnt / "one-more.txt"), b"x")
        assert error(r) == (
            507,
            f"not enough inodes available: open {mnt / 'one-more.txt'}: no space left on device",
        )
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- compose ----------------------------------------------------------------------------------------


def compose(client, **body):
    return client.post("/files/compose", json=body)


def test_compose_concatenates_in_order_and_deletes_sources(client, work):
    for name, text in (("p1", "one "), ("p2", "two "), ("p3", "three")):
        (work / name).write_text(text)
    os.chown(work / "p1", 0, 0)
    sources = [str(work / "p3"), f"{rel(work)}/p1", str(work / "p2")]
    r = compose(client, source_paths=sources, destination=f"{rel(work)}/out/all.txt")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"path": str(work / "out" / "all.txt"), "name": "all.txt", "type": "file"}
    assert (work / "out" / "all.txt").read_text() == "threeone two "
    assert owner(work / "out" / "all.txt") == user_ids() and owner(work / "out") == user_ids()
    assert not any((work / n).exists() for n in ("p1", "p2", "p3"))
    assert [p.name for p in (work / "out").iterdir()] == ["all.txt"]  # no temp file left


def test_compose_replaces_destination_and_runs_as_root(client, work):
    (work / "s").write_text("new")
    (work / "dest").write_text("old content")
    r = compose(client, source_paths=[str(work / "s")], destination=str(work / "dest"), username="root")
    assert r.status_code == 200 and (work / "dest").read_text() == "new" and owner(work / "dest") == (0, 0)


def test_compose_errors(client, work):
    (work / "a").write_text("a")
    (work / "dest").write_text("keep me")
    (work / "d").mkdir()
    assert error(client.post("/files/compose", content=b"{nope"))[0] == 400
    assert error(client.post("/files/compose", content=b"{nope"))[1].startswith("invalid request body: ")
    assert error(compose(client, source_paths=[], destination="x")) == (400, "source_paths must not be empty")
    assert error(compose(client, source_paths=["a"])) == (400, "destination is required")
    assert error(compose(client, source_paths=["a"], destination="x", username="nobody-such-user"))[0] == 401
    r = compose(client, source_paths=[str(work / "a"), "~root/x"], destination=str(work / "dest"))
    assert error(r)[0] == 400 and r.json()["message"].startswith('error resolving source path "~root/x": ')
    r = compose(client, source_paths=[str(work / "a"), f"{rel(work)}/dest"], destination=str(work / "dest"))
    assert error(r) == (400, f'source path "{rel(work)}/dest" cannot be the same as destination')
    r = compose(client, source_paths=[str(work / "a"), "missing-src"], destination=str(work / "dest"))
    assert error(r) == (404, "source file not found: missing-src")
    r = compose(client, source_paths=[str(work / "d")], destination=str(work / "dest"))
    assert error(r) == (400, f"source path is not a regular file: {work / 'd'}")
    # Nothing changed by the failures.
    assert (work / "dest").read_text() == "keep me" and (work / "a").read_text() == "a"
    assert sorted(p.name for p in work.iterdir()) == ["a", "d", "dest"]


def test_compose_disk_full_keeps_destination(client, tiny_fs):
    (tiny_fs / "dest").write_text("original")
    (tiny_fs / "half1").write_bytes(os.urandom(600_000))
    (tiny_fs / "half2").write_bytes(b"")
    src = tiny_fs / "half1"
    r = compose(client, source_paths=[str(src), str(src)], destination=str(tiny_fs / "dest"))
    assert error(r) == (507, "not enough disk space available")
    assert (tiny_fs / "dest").read_text() == "original" and src.exists()
    assert sorted(os.listdir(tiny_fs)) == ["dest", "half1", "half2"]


# --- access token and signed URLs (§2.6) ------------------------------------------------------------

TOKEN = "secret-token"


@pytest.fixture
def secured(fresh_daemon):
    r = httpx.post(f"{fresh_daemon.url}/init", json={"accessToken": TOKEN})
    assert r.status_code == 204
    return fresh_daemon


def signed_query(path: str, operation: str, username: str | None = None, expiration: int | None = None) -> dict:
    query = {"path": path}
    if username is not None:
        query["username"] = username
    query["signature"] = sign(path, operation, username or "", TOKEN, expiration)
    if expiration is not None:
        query["signature_expiration"] = str(expiration)
    return query


def test_secured_header_token(secured, work):
    (work / "h.txt").write_text("header")
    url = f"{secured.url}/files"
    r = httpx.get(url, params={"path": str(work / "h.txt")}, headers={"X-Access-Token": TOKEN})
    assert r.text == "header"
    r = httpx.get(url, params={"path": str(work / "h.txt")}, headers={"X-Access-Token": "wrong"})
    assert error(r) == (401, "access token present in header but does not match")
    # A wrong header is refused even when a valid signature is also present.
    r = httpx.get(url, params=signed_query(str(work / "h.txt"), "read"), headers={"X-Access-Token": "wrong"})
    assert error(r)[0] == 401
    r = httpx.get(url, params={"path": str(work / "h.txt")})
    assert error(r) == (401, "missing signature query parameter")
    r = httpx.post(
        url, params={"path": str(work / "h.txt")}, content=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert error(r) == (401, "missing signature query parameter") and (work / "h.txt").read_text() == "header"


def test_secured_signed_download_and_upload(secured, work):
    target = work / "signed file.txt"  # a space: Py SDK sends %20, JS sends `+`
    target.write_text("signed")
    query = signed_query(str(target), "read")
    assert httpx.get(f"{secured.url}/files", params=query).text == "signed"
    # The Py SDK encodes a space as %20, the JS SDK as `+`; both escape the signature's `+` and `/`.
    for quote_via in (quote, quote_plus):
        encoded = urlencode(query, quote_via=quote_via)
        assert ("%20" if quote_via is quote else "+") in encoded.split("&signature=")[0]
        r = httpx.get(f"{secured.url}/files?{encoded}")
        assert (r.status_code, r.text) == (200, "signed")

    later = int(time.time()) + 120
    r = httpx.get(f"{secured.url}/files", params=signed_query(str(target), "read", expiration=later))
    assert r.text == "signed"
    assert httpx.get(f"{secured.url}/files", params=signed_query(rel(target), "read", "user")).text == "signed"

    up = signed_query(str(work / "up" / "u.bin"), "write", expiration=later)
    r = httpx.post(f"{secured.url}/files", params=up, files={"file": ("whatever", b"signed upload")})
    assert r.status_code == 200 and (work / "up" / "u.bin").read_bytes() == b"signed upload"

    # A read signature does not authorise a write.
    r = httpx.post(f"{secured.url}/files", params=query, files={"file": ("x", b"overwrite")})
    assert error(r) == (401, "invalid signature") and target.read_text() == "signed"


def test_secured_expired_and_forged_signatures(secured, work):
    (work / "e.txt").write_text("e")
    expired = signed_query(str(work / "e.txt"), "read", expiration=int(time.time()) - 10)
    r = httpx.get(f"{secured.url}/files", params=expired)
    assert r.status_code == 401
    assert r.text == '{"code":401,"message":"signature is already expired"}\n'

    forged = dict(expired, signature_expiration=str(int(time.time()) + 3600))
    assert error(httpx.get(f"{secured.url}/files", params=forged)) == (401, "invalid signature")
    other = dict(signed_query(str(work / "e.txt"), "read"), path=str(work / "other.txt"))
    assert error(httpx.get(f"{secured.url}/files", params=other)) == (401, "invalid signature")
    as_root = dict(signed_query(str(work / "e.txt"), "read"), username="root")
    assert error(httpx.get(f"{secured.url}/files", params=as_root)) == (401, "invalid signature")

    r = httpx.post(
        f"{secured.url}/files",
        params=signed_query(str(work / "late.txt"), "write", expiration=int(time.time()) - 10),
        files={"file": ("x", b"late")},
    )
    assert r.json() == {"code": 401, "message": "signature is already expired"}
    assert not (work / "late.txt").exists()


def test_secured_compose_goes_through_the_gate(secured, work):
    (work / "c1").write_text("c")
    body = {"source_paths": [str(work / "c1")], "destination": str(work / "c.out")}
    r = httpx.post(f"{secured.url}/files/compose", json=body)
    assert r.status_code == 401 and "unauthorized access" in r.json()["message"]
    r = httpx.post(f"{secured.url}/files/compose", json=body, headers={"X-Access-Token": TOKEN})
    assert r.status_code == 200 and (work / "c.out").read_text() == "c"
