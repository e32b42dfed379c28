"""One service, every wire protocol (spec/envd.md §4.2): gRPC over h2c (grpcio), Connect binary, gRPC-Web,
plus bad bodies that must be refused cleanly while the daemon keeps serving."""

from __future__ import annotations

import json
import struct
import time
import urllib.parse
from pathlib import Path

import grpc
import httpx
import pytest

from envd.spec.filesystem import filesystem_pb2 as pb
from envd.spec.filesystem import filesystem_pb2_grpc as pb_grpc
from tests.connect_wire import envelope


def split_envelopes(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        flags, length = struct.unpack(">BI", data[:5])
        assert len(data) >= 5 + length, "truncated envelope"
        out.append((flags, data[5 : 5 + length]))
        data = data[5 + length :]
    return out


def url(daemon, method: str) -> str:
    return f"{daemon.url}/filesystem.Filesystem/{method}"


def still_serving(daemon) -> None:
    r = httpx.post(url(daemon, "Stat"), content=b'{"path":"/"}', headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["entry"]["name"] == "/"


@pytest.fixture
def stub(daemon):
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        yield pb_grpc.FilesystemStub(channel)


# -- gRPC (grpcio, cleartext HTTP/2) -----------------------------------------------------------------


def test_grpc_unary_stat(stub, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"1234")
    response = stub.Stat(pb.StatRequest(path=str(tmp_path / "f")), timeout=10)
    assert response.entry.name == "f"
    assert response.entry.type == pb.FILE_TYPE_FILE
    assert response.entry.size == 4
    assert response.entry.modified_time.seconds > 0
    assert not response.entry.HasField("symlink_target")


def test_grpc_error_status(stub, tmp_path: Path) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Stat(pb.StatRequest(path=str(tmp_path / "missing")), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"file not found: lstat {tmp_path}/missing: no such file or directory"
    with pytest.raises(grpc.RpcError) as err:
        stub.MakeDir(pb.MakeDirRequest(path=str(tmp_path)), timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_grpc_unknown_user_is_unauthenticated(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Stat(pb.StatRequest(path="/"), metadata=[("authorization", "Basic bm8tc3VjaC11c2VyOg==")], timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_watch_dir_stream(stub, tmp_path: Path) -> None:
    call = stub.WatchDir(pb.WatchDirRequest(path=str(tmp_path), include_entry=True), timeout=10)
    try:
        first = next(call)
        assert first.WhichOneof("event") == "start"
        (tmp_path / "g").write_text("x")
        created = next(call)
        assert created.filesystem.name == "g"
        assert created.filesystem.type == pb.EVENT_TYPE_CREATE
        assert created.filesystem.entry.path == str(tmp_path / "g")
        assert next(call).filesystem.type == pb.EVENT_TYPE_WRITE
    finally:
        call.cancel()


def test_grpc_watch_dir_keepalive_and_cancel_tears_down(daemon, stub, tmp_path: Path) -> None:
    import psutil

    process = psutil.Process(daemon.process.pid)
    stub.Stat(pb.StatRequest(path="/"), timeout=10)  # the HTTP/2 connection is up and stays up
    baseline = process.num_fds()
    call = stub.WatchDir(pb.WatchDirRequest(path=str(tmp_path)), metadata=[("keepalive-ping-interval", "1")], timeout=30)
    assert next(call).WhichOneof("event") == "start"
    assert next(call).WhichOneof("event") == "keepalive"
    call.cancel()
    assert call.code() == grpc.StatusCode.CANCELLED
    deadline = time.monotonic() + 5
    while process.num_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.num_fds() <= baseline  # the inotify fd went with the stream (the h2 connection stays)


# -- Connect with the binary codec (what the orchestrator uses) -------------------------------------


def test_connect_binary_unary(daemon, tmp_path: Path) -> None:
    r = httpx.post(
        url(daemon, "Stat"),
        content=pb.StatRequest(path=str(tmp_path)).SerializeToString(),
        headers={"content-type": "application/proto", "connect-protocol-version": "1"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/proto"
    entry = pb.StatResponse.FromString(r.content).entry
    assert (entry.path, entry.type) == (str(tmp_path), pb.FILE_TYPE_DIRECTORY)


def test_connect_binary_unary_error_is_json(daemon, tmp_path: Path) -> None:
    r = httpx.post(
        url(daemon, "Stat"),
        content=pb.StatRequest(path=str(tmp_path / "missing")).SerializeToString(),
        headers={"content-type": "application/proto"},
    )
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == "not_found"


def test_connect_binary_stream(daemon, tmp_path: Path) -> None:
    body = envelope(pb.WatchDirRequest(path=str(tmp_path)).SerializeToString())
    headers = {"content-type": "application/connect+proto", "connect-timeout-ms": "800"}
    with httpx.stream("POST", url(daemon, "WatchDir"), content=body, headers=headers, timeout=10) as r:
        assert r.headers["content-type"] == "application/connect+proto"
        chunks = r.iter_raw()
        data = next(chunks)
        while len(data) < 5 or len(data) < 5 + struct.unpack(">I", data[1:5])[0]:
            data += next(chunks)
        (tmp_path / "h").write_text("x")
        data += b"".join(chunks)
    messages = split_envelopes(data)
    assert messages[0] == (0, pb.WatchDirResponse(start=pb.WatchDirResponse.StartEvent()).SerializeToString())
    events = [pb.WatchDirResponse.FromString(payload).filesystem for flags, payload in messages[1:-1]]
    assert [(e.name, e.type) for e in events] == [("h", pb.EVENT_TYPE_CREATE), ("h", pb.EVENT_TYPE_WRITE)]
    flags, end = messages[-1]
    assert flags == 2  # the end-of-stream envelope is JSON whatever the codec
    assert json.loads(end)["error"]["code"] == "deadline_exceeded"


# -- gRPC-Web over HTTP/1.1 --------------------------------------------------------------------------


def grpc_web_trailers(payload: bytes) -> dict[str, str]:
    trailers = {}
    for line in payload.decode().split("\r\n"):
        if line:
            key, _, value = line.partition(":")
            trailers[key.strip().lower()] = urllib.parse.unquote(value.strip())
    return trailers


def test_grpc_web_unary(daemon, tmp_path: Path) -> None:
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    request = envelope(pb.StatRequest(path=str(tmp_path)).SerializeToString())
    with httpx.Client(http1=True, http2=False) as client:
        r = client.post(url(daemon, "Stat"), content=request, headers=headers)
    assert r.http_version == "HTTP/1.1"
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/grpc-web")
    (message_flags, message), (trailer_flags, trailers) = split_envelopes(r.content)
    assert message_flags == 0
    assert pb.StatResponse.FromString(message).entry.path == str(tmp_path)
    assert trailer_flags == 0x80
    assert grpc_web_trailers(trailers)["grpc-status"] == "0"


def test_grpc_web_error_in_trailers(daemon, tmp_path: Path) -> None:
    headers = {"content-type": "application/grpc-web+proto"}
    request = envelope(pb.StatRequest(path=str(tmp_path / "missing")).SerializeToString())
    r = httpx.post(url(daemon, "Stat"), content=request, headers=headers)
    assert r.status_code == 200
    ((flags, payload),) = split_envelopes(r.content)
    assert flags == 0x80
    trailers = grpc_web_trailers(payload)
    assert trailers["grpc-status"] == "5"
    assert trailers["grpc-message"].startswith("file not found: lstat")


def test_grpc_web_stream(daemon, tmp_path: Path) -> None:
    headers = {"content-type": "application/grpc-web+proto", "grpc-timeout": "700m"}
    request = envelope(pb.WatchDirRequest(path=str(tmp_path)).SerializeToString())
    started = time.monotonic()
    r = httpx.post(url(daemon, "WatchDir"), content=request, headers=headers, timeout=10)
    assert 0.6 < time.monotonic() - started < 5
    messages = split_envelopes(r.content)
    assert pb.WatchDirResponse.FromString(messages[0][1]).WhichOneof("event") == "start"
    flags, payload = messages[-1]
    assert flags == 0x80
    assert grpc_web_trailers(payload)["grpc-status"] == "4"  # DEADLINE_EXCEEDED


# -- bad bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"path": '),
        ("application/json", b'{"path": 5}'),
        ("application/json", b"\xff\xfe"),
        ("application/proto", b"\xff\xff\xff\xff"),
    ],
)
def test_malformed_body_is_invalid_argument(daemon, content_type: str, body: bytes) -> None:
    r = httpx.post(url(daemon, "Stat"), content=body, headers={"content-type": content_type})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_argument"
    assert "filesystem.StatRequest" in r.json()["message"]
    still_serving(daemon)


def test_malformed_stream_request_is_invalid_argument(daemon) -> None:
    r = httpx.post(
        url(daemon, "WatchDir"), content=envelope(b'{"path": '), headers={"content-type": "application/connect+json"}
    )
    assert r.status_code == 200
    ((flags, payload),) = split_envelopes(r.content)
    assert flags == 2
    assert json.loads(payload)["error"]["code"] == "invalid_argument"
    still_serving(daemon)


def test_unsupported_content_type_is_415(daemon) -> None:
    r = httpx.post(url(daemon, "Stat"), content=b"path=/", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    still_serving(daemon)


def test_unknown_procedure_is_404(daemon) -> None:
    r = httpx.post(url(daemon, "Chmod"), content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 404
    still_serving(daemon)


def test_over_limit_body_is_resource_exhausted(daemon) -> None:
    limit = 64 * 1024 * 1024  # Config.rpc_read_max_bytes
    body = b'{"path": "' + b"a" * (limit + 1024 * 1024) + b'"}'
    r = httpx.post(url(daemon, "Stat"), content=body, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 429
    assert r.json()["code"] == "resource_exhausted"
    still_serving(daemon)
