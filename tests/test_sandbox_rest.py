"""/health, /init, /envs, /metrics, CORS, routing and the token gate, through a real daemon."""

import base64
import json

import httpx
import pytest

UNAUTHORIZED = {
    "code": 401,
    "message": "unauthorized access, please provide a valid access token or method signing if supported",
}
FILESYSTEM_RPCS = [
    "Stat", "MakeDir", "Move", "ListDir", "Remove", "WatchDir", "CreateWatcher", "GetWatcherEvents", "RemoveWatcher",
]
PROTECTED = [
    ("GET", "/envs"),
    ("GET", "/metrics"),
    ("POST", "/files/compose"),
    *(("POST", f"/filesystem.Filesystem/{name}") for name in FILESYSTEM_RPCS),
    ("POST", "/nope"),
]


def test_health_is_204_without_body(daemon):
    r = httpx.get(f"{daemon.url}/health")
    assert r.status_code == 204 and r.content == b""
    assert r.headers["cache-control"] == "no-store"


def test_unknown_path_and_wrong_method(daemon):
    r = httpx.get(f"{daemon.url}/nope")
    assert (r.status_code, r.text) == (404, "404 page not found\n")
    r = httpx.post(f"{daemon.url}/health")
    assert (r.status_code, r.content) == (405, b"")


def test_cors_preflight_and_headers(daemon):
    r = httpx.options(
        f"{daemon.url}/filesystem.Filesystem/Stat",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-access-token, connect-protocol-version",
        },
    )
    assert r.status_code == 204 and r.content == b""
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-headers"] == "x-access-token, connect-protocol-version"
    assert r.headers["access-control-max-age"] == "7200"
    r = httpx.get(f"{daemon.url}/health", headers={"Origin": "https://app.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "Grpc-Status" in r.headers["access-control-expose-headers"]


def test_metrics_fields_and_units(daemon):
    r = httpx.get(f"{daemon.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == [
        "ts", "cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib",
        "mem_total", "mem_used", "mem_cache", "disk_used", "disk_total",
    ]
    assert body["mem_total_mib"] == body["mem_total"] // 1048576
    assert 0 < body["mem_used"] < body["mem_total"]
    assert 0 <= body["cpu_used_pct"] <= 100
    assert 0 < body["disk_used"] < body["disk_total"]


def test_envs_start_with_internal_marker(daemon):
    assert httpx.get(f"{daemon.url}/envs").json()["E2B_SANDBOX"] == "false"
    assert (daemon.run_dir / ".E2B_SANDBOX").read_text() == "false"


def init(daemon, body, **kw) -> httpx.Response:
    return httpx.post(f"{daemon.url}/init", content=json.dumps(body), **kw)


def test_init_sets_envs_defaults_and_token(fresh_daemon):
    d = fresh_daemon
    r = init(d, {"envVars": {"FOO": "bar"}, "accessToken": "tok", "defaultUser": "root", "defaultWorkdir": "/tmp"})
    assert r.status_code == 204 and r.headers["x-envd-version"] == "0.6.13"
    # Every protected route now needs the token, with the exact upstream 401 body.
    for method, path in PROTECTED:
        r = httpx.request(method, f"{d.url}{path}", headers={"content-type": "application/json"}, content=b"{}")
        assert (r.status_code, r.json()) == (401, UNAUTHORIZED), path
        r = httpx.request(method, f"{d.url}{path}", headers={"x-access-token": "wrong"})
        assert r.status_code == 401, path
    assert httpx.get(f"{d.url}/health").status_code == 204
    envs = httpx.get(f"{d.url}/envs", headers={"x-access-token": "tok"}).json()
    assert envs == {"E2B_SANDBOX": "false", "FOO": "bar"}
    # envVars replace the whole user set.
    assert init(d, {"accessToken": "tok", "envVars": {"X": "1"}}).status_code == 204
    assert httpx.get(f"{d.url}/envs", headers={"x-access-token": "tok"}).json() == {"E2B_SANDBOX": "false", "X": "1"}


def test_init_token_cannot_change_or_clear_without_mmds(fresh_daemon):
    d = fresh_daemon
    assert init(d, {"accessToken": "first"}).status_code == 204
    r = init(d, {"accessToken": "second"})
    assert (r.status_code, r.text) == (401, "access token validation failed")
    assert r.headers["x-envd-version"] == "0.6.13"
    r = init(d, {})
    assert (r.status_code, r.text) == (401, "access token reset not authorized")
    assert httpx.get(f"{d.url}/envs", headers={"x-access-token": "first"}).status_code == 200


def test_init_rejects_bad_bodies_and_keeps_serving(fresh_daemon):
    d = fresh_daemon
    for body in [b"{not json", b'{"accessToken": ""}', b'{"accessToken": "a\\\\b"}', b"[1]", b'{"timestamp": "yesterday"}']:
        r = httpx.post(f"{d.url}/init", content=body)
        assert (r.status_code, r.content) == (400, b""), body
    assert httpx.get(f"{d.url}/health").status_code == 204
    assert httpx.get(f"{d.url}/envs").status_code == 200  # still no token


def test_init_replay_guard_skips_stale_requests(fresh_daemon):
    d = fresh_daemon
    assert init(d, {"timestamp": "2030-01-01T00:00:00.000000002Z", "envVars": {"V": "new"}}).status_code == 204
    r = init(d, {"timestamp": "2030-01-01T00:00:00.000000001Z", "envVars": {"V": "old"}})
    assert r.status_code == 204
    assert httpx.get(f"{d.url}/envs").json()["V"] == "new"


def test_unknown_basic_user_is_rejected_on_rest_routes(daemon):
    auth = "Basic " + base64.b64encode(b"nobody-here:").decode()
    r = httpx.get(f"{daemon.url}/envs", headers={"authorization": auth})
    assert r.status_code == 401
    assert r.json() == {"code": "unauthenticated", "message": "invalid username: 'nobody-here'"}


@pytest.mark.parametrize("content_type", ["application/json", "application/connect+json"])
def test_unknown_basic_user_is_rejected_on_rpcs(daemon, content_type):
    auth = "Basic " + base64.b64encode(b"nobody-here:").decode()
    body = b"{}" if content_type == "application/json" else b"\x00\x00\x00\x00\x02{}"
    headers = {"authorization": auth, "content-type": content_type}
    if content_type == "application/json":
        r = httpx.post(f"{daemon.url}/filesystem.Filesystem/Stat", headers=headers, content=body)
        assert r.status_code == 401
        assert r.json() == {"code": "unauthenticated", "message": "invalid username: 'nobody-here'"}
    elif content_type == "application/connect+json":  # streams: HTTP 200 + end-of-stream error
        r = httpx.post(f"{daemon.url}/filesystem.Filesystem/WatchDir", headers=headers, content=body)
        assert r.status_code == 200
        end = json.loads(r.content[5:])
        assert r.content[0] == 0x02 and end["error"]["code"] == "unauthenticated"
    else:
        raise AssertionError(content_type)
