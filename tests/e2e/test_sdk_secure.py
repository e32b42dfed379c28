"""Secure mode through the unmodified Python SDK: access token on every call, signed /files URLs.

Debug mode never uses a token (sdk-expectations.md §2.2), so the SDK runs in normal mode against a
small stand-in of the control plane (§2.3): `POST /v2/sandboxes` configures a fresh envd through
`/init` with a token, then answers 201 with that token as `envdAccessToken`. `E2B_SANDBOX_URL`
sends all envd traffic, and the signed URLs, to the daemon.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from e2b import FileType, InvalidArgumentException, Sandbox

pytestmark = pytest.mark.sdk

ENVD_VERSION = "0.6.13"
GATE_401 = {
    "code": 401,
    "message": "unauthorized access, please provide a valid access token or method signing if supported",
}


@dataclass
class ControlPlane:
    """What the stand-in saw and handed out."""

    envd_url: str
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    requests: list[tuple[str, str, dict, dict]] = field(default_factory=list)
    url: str = ""


def control_plane_handler(cp: ControlPlane) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def reply(self, status: int, body: dict | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def record(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            cp.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            return body

        def do_POST(self) -> None:
            body = self.record()
            if self.path == "/v2/sandboxes":
                # What the orchestrator does before the SDK sees the sandbox (§2.3).
                r = httpx.post(
                    f"{cp.envd_url}/init",
                    json={"accessToken": cp.token, "defaultUser": "user", "envVars": body.get("envVars") or {}},
                    timeout=10,
                )
                if r.status_code != 204:
                    return self.reply(500, {"code": 500, "message": f"envd /init answered {r.status_code}: {r.text}"})
                return self.reply(201, {
                    "sandboxID": f"sbx{uuid.uuid4().hex[:12]}",
                    "templateID": body.get("templateID", "base"),
                    "clientID": "local",
                    "envdVersion": ENVD_VERSION,
                    "envdAccessToken": cp.token,
                    "trafficAccessToken": None,
                    "domain": None,
                })
            self.reply(404, {"code": 404, "message": f"no route {self.path}"})

        def do_DELETE(self) -> None:
            self.record()
            if self.path.startswith("/sandboxes/"):
                return self.reply(204)
            self.reply(404, {"code": 404, "message": f"no route {self.path}"})

        def do_GET(self) -> None:
            self.record()
            self.reply(404, {"code": 404, "message": f"no route {self.path}"})

    return Handler


@pytest.fixture
def control_plane(fresh_daemon) -> Iterator[ControlPlane]:
    cp = ControlPlane(envd_url=fresh_daemon.url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), control_plane_handler(cp))
    cp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.delenv("E2B_DEBUG", raising=False)
            mp.delenv("E2B_DOMAIN", raising=False)
            mp.setenv("E2B_API_URL", cp.url)
            mp.setenv("E2B_API_KEY", "anything")
            mp.setenv("E2B_SANDBOX_URL", fresh_daemon.url)
            yield cp
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sbx(control_plane) -> Sandbox:
    sandbox = Sandbox.create()
    method, path, headers, body = control_plane.requests[0]
    assert (method, path) == ("POST", "/v2/sandboxes")
    assert headers.get("x-api-key") == "anything"
    assert body["templateID"] == "base"
    assert sandbox._envd_access_token == control_plane.token
    return sandbox


def test_token_is_sent_on_every_sdk_call(sbx, control_plane, fresh_daemon, user_home):
    # RPC (Stat, ListDir, MakeDir, Move, Remove, CreateWatcher) and REST (/files) all pass the gate.
    p = str(user_home / "secure.txt")
    info = sbx.files.write(p, "secret payload")
    assert info.path == p
    assert sbx.files.read(p) == "secret payload"
    assert sbx.files.exists(p)
    assert sbx.files.get_info(p).type == FileType.FILE
    assert sbx.files.make_dir(str(user_home / "d")) is True
    assert [e.name for e in sbx.files.list(str(user_home))] == ["d", "secure.txt"]
    sbx.files.rename(p, str(user_home / "d" / "moved.txt"))
    handle = sbx.files.watch_dir(str(user_home / "d"))
    sbx.files.write(str(user_home / "d" / "new.txt"), "n")
    assert "new.txt" in [e.name for e in handle.get_new_events()]
    handle.stop()
    sbx.files.remove(str(user_home / "d"))
    assert sbx.is_running()

    # The same calls without the token are refused.
    rpc = httpx.post(
        f"{fresh_daemon.url}/filesystem.Filesystem/Stat",
        json={"path": p},
        headers={"Connect-Protocol-Version": "1"},
    )
    assert rpc.status_code == 401
    assert rpc.headers["content-type"] == "application/json; charset=utf-8"
    assert rpc.json() == GATE_401  # §2.2: plain JSON, not a Connect error
    wrong = httpx.post(
        f"{fresh_daemon.url}/filesystem.Filesystem/Stat",
        json={"path": p},
        headers={"Connect-Protocol-Version": "1", "X-Access-Token": "not-the-token"},
    )
    assert (wrong.status_code, wrong.json()) == (401, GATE_401)
    assert httpx.get(f"{fresh_daemon.url}/envs").json() == GATE_401

    # /files is exempt from the gate but authenticates itself (§2.6).
    r = httpx.get(f"{fresh_daemon.url}/files", params={"path": p})
    assert (r.status_code, r.json()) == (401, {"code": 401, "message": "missing signature query parameter"})
    r = httpx.get(f"{fresh_daemon.url}/files", params={"path": p}, headers={"X-Access-Token": "nope"})
    assert r.status_code == 401
    assert r.json() == {"code": 401, "message": "access token present in header but does not match"}
    assert httpx.get(f"{fresh_daemon.url}/health").status_code == 204  # always open

    assert sbx.kill() is True
    assert control_plane.requests[-1][:2] == ("DELETE", f"/sandboxes/{sbx.sandbox_id}")


def test_envs_from_create_reach_envd_through_init(control_plane, fresh_daemon):
    Sandbox.create(envs={"FROM_CREATE": "yes"})
    r = httpx.get(f"{fresh_daemon.url}/envs", headers={"X-Access-Token": control_plane.token})
    assert r.status_code == 200 and r.json()["FROM_CREATE"] == "yes"


def test_signed_urls_work_from_a_plain_http_client(sbx, user_home):
    target = user_home / "signed file.txt"  # a space: Py encodes it as %20 (§3.4)
    target.write_text("downloaded via signature")

    url = sbx.download_url(str(target))
    q = parse_qs(urlsplit(url).query)
    assert url.startswith(sbx.envd_direct_url + "/files?")
    assert q["path"] == [str(target)] and q["signature"][0].startswith("v1_") and "signature_expiration" not in q
    r = httpx.get(url)
    assert (r.status_code, r.text) == (200, "downloaded via signature")

    url = sbx.download_url(str(target), use_signature_expiration=120)
    assert "signature_expiration" in parse_qs(urlsplit(url).query)
    assert httpx.get(url).text == "downloaded via signature"

    up = sbx.upload_url(str(user_home / "up" / "uploaded.bin"))
    r = httpx.post(up, files={"file": ("whatever.bin", b"\x00\x01signed upload")})
    assert r.status_code == 200, r.text
    assert r.json()[0]["path"] == str(user_home / "up" / "uploaded.bin")
    assert (user_home / "up" / "uploaded.bin").read_bytes() == b"\x00\x01signed upload"

    up = sbx.upload_url(str(user_home / "up2.txt"), use_signature_expiration=120)
    r = httpx.post(up, files={"file": ("x", b"with expiry")})
    assert r.status_code == 200, r.text
    assert sbx.files.read(str(user_home / "up2.txt")) == "with expiry"

    # A user in the URL is part of the signature and picks the home for relative paths.
    url = sbx.download_url(str(target.relative_to("/home/user")), user="user")
    assert parse_qs(urlsplit(url).query)["username"] == ["user"]
    assert httpx.get(url).text == "downloaded via signature"

    # Non-ASCII and reserved characters survive signing + percent-encoding.
    odd = user_home / "ünï+cødé & ?#.txt"
    odd.write_text("odd")
    assert httpx.get(sbx.download_url(str(odd), use_signature_expiration=30)).text == "odd"

    # As root: the username is signed, and relative paths resolve under /root.
    name = f"envd-signed-{uuid.uuid4().hex[:8]}.txt"
    try:
        r = httpx.post(sbx.upload_url(name, user="root"), files={"file": ("x", b"root's")})
        assert r.status_code == 200, r.text
        assert r.json()[0]["path"] == f"/root/{name}"
        assert Path(f"/root/{name}").stat().st_uid == 0
        assert httpx.get(sbx.download_url(name, user="root", use_signature_expiration=30)).text == "root's"
    finally:
        Path(f"/root/{name}").unlink(missing_ok=True)

    # A read signature does not authorise a write to the same path.
    read_sig = parse_qs(urlsplit(sbx.download_url(str(target))).query)["signature"][0]
    r = httpx.post(
        f"{sbx.envd_direct_url}/files?" + urlencode({"path": str(target), "signature": read_sig}),
        files={"file": ("x", b"overwrite")},
    )
    assert (r.status_code, r.json()) == (401, {"code": 401, "message": "invalid signature"})
    assert target.read_text() == "downloaded via signature"


def test_expired_signature_is_refused(sbx, user_home):
    (user_home / "old.txt").write_text("old")
    expired = {"code": 401, "message": "signature is already expired"}

    r = httpx.get(sbx.download_url(str(user_home / "old.txt"), use_signature_expiration=-10))
    assert r.status_code == 401
    assert r.json() == expired
    assert r.text == json.dumps(expired, separators=(",", ":")) + "\n"  # §3.1.1 byte layout

    r = httpx.post(
        sbx.upload_url(str(user_home / "never.txt"), use_signature_expiration=-10),
        files={"file": ("x", b"late")},
    )
    assert (r.status_code, r.json()) == (401, expired)
    assert not (user_home / "never.txt").exists()


def test_tampered_signature_is_refused(sbx, user_home):
    (user_home / "t.txt").write_text("t")
    (user_home / "other.txt").write_text("other")
    invalid = {"code": 401, "message": "invalid signature"}
    url = sbx.download_url(str(user_home / "t.txt"), use_signature_expiration=60)
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"

    def get(**changes):
        return httpx.get(base + "?" + urlencode({**q, **changes}))

    assert get().status_code == 200  # untouched, re-encoded
    sig = q["signature"]
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    for r in (
        get(signature=flipped),
        get(path=str(user_home / "other.txt")),  # signature for another path
        get(signature_expiration=str(int(q["signature_expiration"]) + 3600)),  # extended expiry
        get(username="root"),
    ):
        assert (r.status_code, r.json()) == (401, invalid)


def test_signature_expiration_needs_a_secured_sandbox(monkeypatch, daemon):
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_SANDBOX_URL", daemon.url)
    debug = Sandbox.create()
    with pytest.raises(InvalidArgumentException):
        debug.upload_url("/tmp/x", use_signature_expiration=10)
