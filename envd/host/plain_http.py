"""One-shot HTTP requests for MMDS (§8.1) and the log exporter (§8.2): a fresh connection each time, no
keep-alive, no proxy from the environment (both talk to link-local / host addresses). Blocking: run in a thread."""

from __future__ import annotations

import http.client
import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def request(url: str, method: str, path: str = "", headers: dict[str, str] | None = None,
            body: bytes = b"", timeout: float = 10.0) -> Response:
    """`path` replaces the URL's path when given. Raises OSError / http.client.HTTPException on failure."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname, parts.port, timeout=timeout)
    target = path or parts.path or "/"
    if not path and parts.query:
        target += "?" + parts.query
    try:
        connection.request(method, target, body=body, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return Response(response.status, response.read())
    finally:
        connection.close()
