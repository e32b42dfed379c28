"""Loopback stand-ins for the Firecracker metadata service (spec/envd.md §8.1) and a log collector (§8.2).

Real HTTP servers in a thread of the test process. The MMDS one is as strict as Firecracker's MMDS v2: a
token from `PUT /latest/api/token` (which needs `X-metadata-token-ttl-seconds`) must accompany `GET /`,
and only `Accept: application/json` gets JSON (anything else gets the IMDS-style text listing).
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _MMDSHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        owner: MMDSStandIn = self.server.owner  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ttl = self.headers.get("X-metadata-token-ttl-seconds")
        owner.requests.append(("PUT", self.path, dict(self.headers)))
        if self.path != "/latest/api/token":
            return self._answer(404, b"not found")
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._answer(400, b'{"fault_message":"invalid or missing TTL header"}', "application/json")
        token = secrets.token_hex(16)
        owner.tokens.add(token)
        self._answer(200, token.encode())

    def do_GET(self) -> None:
        owner: MMDSStandIn = self.server.owner  # type: ignore[attr-defined]
        owner.requests.append(("GET", self.path, dict(self.headers)))
        if self.headers.get("X-metadata-token") not in owner.tokens:
            return self._answer(401, b'{"fault_message":"no valid MMDS token"}', "application/json")
        if self.path != "/":
            return self._answer(404, b"not found")
        if self.headers.get("Accept") != "application/json":
            return self._answer(200, "\n".join(owner.metadata).encode())
        owner.served += 1
        self._answer(200, json.dumps(owner.metadata).encode(), "application/json")


class MMDSStandIn(_Server):
    def __init__(self, metadata: dict[str, str], port: int = 0) -> None:
        self.metadata = dict(metadata)
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, dict]] = []
        self.served = 0
        super().__init__(_MMDSHandler, port)


class _CollectorHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        owner: Collector = self.server.owner  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with owner.lock:
            owner.posts.append((self.headers.get("Content-Type"), body))
        self.send_response(owner.status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Collector(_Server):
    """Records each POSTed line; answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str | None, bytes]] = []
        self.lock = threading.Lock()
        super().__init__(_CollectorHandler)

    def lines(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _type, body in self.posts]

    def wait_for(self, predicate, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if any(predicate(line) for line in lines):
                return lines
            time.sleep(0.05)
        raise AssertionError(f"no matching log line within {timeout} s; got {self.lines()[-5:]}")


class HangingCollector:
    """Accepts connections (the kernel completes them from the backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()
