"""HTTP transports on the one port: HTTP/1.1 with chunked request bodies, cleartext HTTP/2 (prior knowledge)."""

import json
import struct

import httpx

from tests.connect_wire import envelope

CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}


def test_chunked_request_body_on_http11(daemon):
    def body():
        yield b'{"path":'
        yield b'"/tmp"}'

    with httpx.Client() as client:
        r = client.post(f"{daemon.url}/filesystem.Filesystem/Stat", headers=CONNECT_JSON, content=body())
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 200 and r.json()["entry"]["path"] == "/tmp"


def test_connect_over_cleartext_http2(daemon):
    with httpx.Client(http1=False, http2=True) as client:
        r = client.post(f"{daemon.url}/filesystem.Filesystem/Stat", headers=CONNECT_JSON, content=b'{"path":"/tmp"}')
        assert r.http_version == "HTTP/2"
        assert r.status_code == 200 and r.json()["entry"]["type"] == "FILE_TYPE_DIRECTORY"
        r = client.get(f"{daemon.url}/health")
        assert r.http_version == "HTTP/2" and r.status_code == 204


def test_connect_stream_over_cleartext_http2(daemon, tmp_path):
    headers = {"content-type": "application/connect+json", "connect-protocol-version": "1", "connect-timeout-ms": "300"}
    request = envelope(json.dumps({"path": str(tmp_path)}).encode())
    with httpx.Client(http1=False, http2=True) as client:
        r = client.post(f"{daemon.url}/filesystem.Filesystem/WatchDir", headers=headers, content=request)
    assert r.http_version == "HTTP/2" and r.status_code == 200
    flags, length = struct.unpack(">BI", r.content[:5])
    assert (flags, json.loads(r.content[5 : 5 + length])) == (0, {"start": {}})
    tail = r.content[5 + length :]
    assert tail[0] == 0x02 and json.loads(tail[5:])["error"]["code"] == "deadline_exceeded"


def test_closed_keepalive_connections_release_their_sockets(daemon):
    import http.client
    import time

    import psutil

    process = psutil.Process(daemon.process.pid)
    baseline = process.num_fds()
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port)
        conn.request("GET", "/health")
        conn.getresponse().read()
        conn.close()  # the client hangs up on an idle keep-alive connection
    deadline = time.monotonic() + 5
    while process.num_fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.num_fds() <= baseline, "sockets of closed connections stay open (CLOSE-WAIT)"
