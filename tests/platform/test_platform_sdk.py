"""The unmodified Python SDK in normal mode (E2B_API_URL, E2B_API_KEY, E2B_SANDBOX_URL) against `envd platform`.

Every sandbox is a QEMU microVM restored from the base template's saved state; one platform for the module.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import psutil
import pytest
from e2b import Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import AuthenticationException, NotFoundException, SandboxException

pytestmark = pytest.mark.sdk


@pytest.fixture
def sandbox(platform):
    sb = Sandbox.create("base", timeout=120, envs={"GREETING": "hello from create"})
    try:
        yield sb
    finally:
        sb.kill()


def test_commands_env_user_and_clock(sandbox):
    result = sandbox.commands.run('echo "$GREETING"; id -un; pwd; date +%s.%N; echo "$E2B_SANDBOX_ID"')
    greeting, user, cwd, guest_time, sandbox_id = result.stdout.splitlines()
    assert (greeting, user, cwd) == ("hello from create", "user", "/home/user")
    assert sandbox_id == sandbox.sandbox_id
    # The guest clock stood still while the template was saved; /init's timestamp set it.
    assert abs(float(guest_time) - time.time()) < 5
    with pytest.raises(Exception) as info:
        sandbox.commands.run("exit 3")
    assert getattr(info.value, "exit_code", None) == 3


def test_files_roundtrip_and_list(sandbox):
    sandbox.files.write("notes/a.txt", "first")
    sandbox.files.write("/home/user/notes/b.bin", b"\x00\x01\x02")
    assert sandbox.files.read("notes/a.txt") == "first"
    assert sandbox.files.read("/home/user/notes/b.bin", format="bytes") == b"\x00\x01\x02"
    names = sorted(entry.name for entry in sandbox.files.list("/home/user/notes"))
    assert names == ["a.txt", "b.bin"]
    info = sandbox.files.get_info("/home/user/notes/a.txt")
    assert (info.owner, info.size) == ("user", 5)


def test_pty(sandbox):
    from e2b import PtySize

    chunks: list[bytes] = []
    handle = sandbox.pty.create(PtySize(rows=24, cols=80), timeout=60)
    sandbox.pty.send_stdin(handle.pid, b"echo pty-$((6*7)); exit\n")
    result = handle.wait(on_pty=chunks.append)
    assert result.exit_code == 0
    assert b"pty-42" in b"".join(chunks)


def test_watch_dir(sandbox):
    sandbox.files.make_dir("/home/user/watched")
    watcher = sandbox.files.watch_dir("/home/user/watched")
    try:
        sandbox.files.write("/home/user/watched/new.txt", "x")
        deadline = time.monotonic() + 10
        events = []
        while time.monotonic() < deadline and not events:
            events = [e for e in watcher.get_new_events() if e.name == "new.txt"]
            time.sleep(0.1)
        assert events and events[0].type.name == "CREATE"
    finally:
        watcher.stop()


def test_two_sandboxes_are_isolated(platform):
    one = Sandbox.create("base", timeout=120)
    two = Sandbox.create("base", timeout=120)
    try:
        assert one.sandbox_id != two.sandbox_id
        one.files.write("/home/user/only-in-one", "1")
        assert one.files.exists("/home/user/only-in-one")
        assert not two.files.exists("/home/user/only-in-one")
        # Clones of one saved state get fresh kernel randomness at /init (envd/host/entropy.py).
        draw = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'"
        assert one.commands.run(draw).stdout != two.commands.run(draw).stdout
    finally:
        one.kill()
        two.kill()


def test_metadata_list_filters_and_pagination(platform):
    tag = uuid.uuid4().hex[:8]
    a = Sandbox.create("base", timeout=120, metadata={"suite": tag, "role": "a"})
    b = Sandbox.create("base", timeout=120, metadata={"suite": tag, "role": "b"})
    try:
        found = Sandbox.list(query=SandboxQuery(metadata={"suite": tag})).next_items()
        assert {s.sandbox_id for s in found} == {a.sandbox_id, b.sandbox_id}
        only_b = Sandbox.list(query=SandboxQuery(metadata={"suite": tag, "role": "b"})).next_items()
        assert [s.sandbox_id for s in only_b] == [b.sandbox_id]
        assert only_b[0].metadata == {"suite": tag, "role": "b"}
        assert Sandbox.list(query=SandboxQuery(metadata={"suite": tag},
                                               state=[SandboxState.PAUSED])).next_items() == []
        pages = Sandbox.list(query=SandboxQuery(metadata={"suite": tag}), limit=1)
        first = pages.next_items()
        assert len(first) == 1 and pages.has_next
        second = pages.next_items()
        assert len(second) == 1 and not pages.has_next
        assert {first[0].sandbox_id, second[0].sandbox_id} == {a.sandbox_id, b.sandbox_id}
    finally:
        a.kill()
        b.kill()


def test_get_info(sandbox):
    # envdVersion: what the image's envd prints for `envd -version` (this checkout's, built into the image).
    version = subprocess.run([sys.executable, "-m", "envd", "-version"], capture_output=True, text=True).stdout
    assert str(sandbox._envd_version) == version.strip()
    info = sandbox.get_info()
    assert info.sandbox_id == sandbox.sandbox_id
    assert info.template_id == "base"
    assert info.state == SandboxState.RUNNING
    assert info.cpu_count == 2 and info.memory_mb == 512
    assert 100 < (info.end_at - info.started_at).total_seconds() <= 121


def test_metrics(sandbox):
    deadline = time.monotonic() + 20
    metrics = []
    while time.monotonic() < deadline and not metrics:
        metrics = sandbox.get_metrics()
        time.sleep(0.5)
    assert metrics, "no metrics sampled from the VM's envd"
    last = metrics[-1]
    assert last.cpu_count == 2
    assert 400 * 2**20 < last.mem_total <= 512 * 2**20  # the guest's RAM, not the host's
    assert 0 < last.disk_used < last.disk_total


def test_kill(platform):
    sb = Sandbox.create("base", timeout=120)
    sandbox_dir = platform.state / "sandboxes" / sb.sandbox_id
    assert sandbox_dir.is_dir()
    assert sb.is_running()
    sb.kill()
    assert not sb.is_running()  # the proxy answers 502 "sandbox was not found"
    assert not sandbox_dir.exists()  # overlay and run files gone
    assert Sandbox.kill(sb.sandbox_id) is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sb.sandbox_id)


def test_set_timeout_expiry_kills_the_vm(platform):
    sb = Sandbox.create("base", timeout=300)
    pids_before = set(platform.qemu_pids())
    sb.set_timeout(2)
    deadline = time.monotonic() + 30
    while sb.is_running() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not sb.is_running()
    assert not (platform.state / "sandboxes" / sb.sandbox_id).exists()
    assert len(set(platform.qemu_pids()) & pids_before) < len(pids_before), "its QEMU is still running"


def test_unknown_template_and_bad_key(platform):
    with pytest.raises(SandboxException, match="template 'no-such-template' not found"):
        Sandbox.create("no-such-template")
    with pytest.raises(AuthenticationException):
        Sandbox.create("base", api_key="wrong-key")


def test_unknown_sandbox_through_the_proxy(platform):
    response = httpx.get(f"{platform.sandbox_url}/health", headers={"E2b-Sandbox-Id": "inosuchsandbox"})
    assert response.status_code == 502
    assert response.json()["message"] == "The sandbox was not found"
    with pytest.raises(Exception, match="not found"):
        Sandbox.connect("inosuchsandbox")


def test_port_forwarding_by_host(sandbox, platform):
    """A server a process starts in the VM is reachable through the proxy (Host `<port>-<id>.<domain>`)."""
    sandbox.commands.run("cd /tmp && echo served > index.html && python3 -m http.server 8000", background=True)
    host = sandbox.get_host(8000)
    assert host.startswith(f"8000-{sandbox.sandbox_id}.")
    deadline = time.monotonic() + 30
    response = None
    while time.monotonic() < deadline:
        response = httpx.get(f"{platform.sandbox_url}/index.html", headers={"Host": host})
        if response.status_code == 200:
            break
        time.sleep(0.3)
    assert response is not None and response.status_code == 200 and response.text == "served\n"
    closed = httpx.get(f"{platform.sandbox_url}/", headers={"Host": f"8001-{sandbox.sandbox_id}.localhost"})
    assert closed.status_code == 502 and "port is not open" in closed.json()["message"]


# --- secure mode ---


def test_requests_without_the_token_are_refused_by_envd(sandbox, platform):
    headers = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49983",
               "Content-Type": "application/json", "Connect-Protocol-Version": "1"}
    refused = httpx.post(f"{platform.sandbox_url}/filesystem.Filesystem/Stat", json={"path": "/etc"},
                         headers=headers)
    assert refused.status_code == 401  # from envd inside the VM: the proxy adds no token
    token = sandbox._envd_access_token
    assert token
    allowed = httpx.post(f"{platform.sandbox_url}/filesystem.Filesystem/Stat", json={"path": "/etc"},
                         headers={**headers, "X-Access-Token": token})
    assert allowed.status_code == 200
    unsigned = httpx.get(f"{platform.sandbox_url}/files", params={"path": "/etc/hostname"}, headers=headers)
    assert unsigned.status_code == 401


def test_signed_urls(sandbox):
    sandbox.files.write("/home/user/signed.txt", "signed content")
    # Plain HTTP clients without any SDK header: the proxy finds the sandbox by the signature.
    url = sandbox.download_url("/home/user/signed.txt")
    assert httpx.get(url).text == "signed content"
    upload = sandbox.upload_url("/home/user/uploaded.txt")
    response = httpx.post(upload, files={"file": ("uploaded.txt", b"via signed url")})
    assert response.status_code == 200, response.text
    assert sandbox.files.read("/home/user/uploaded.txt") == "via signed url"
    expiring = sandbox.download_url("/home/user/signed.txt", use_signature_expiration=1)
    time.sleep(3)
    expired = httpx.get(expiring)
    guest_offset = float(sandbox.commands.run("date +%s.%N").stdout) - time.time()
    assert expired.status_code == 401, f"guest clock {guest_offset:+.2f} s from the host's; {expired.text}"
    assert expired.json() == {"code": 401, "message": "signature is already expired"}
    forged = url.replace("signature=v1_", "signature=v1_x")
    assert httpx.get(forged).status_code in (401, 502)


# --- pause / resume ---


def test_pause_resume_keeps_processes_and_files(platform):
    sb = Sandbox.create("base", timeout=120, envs={"KEPT": "yes"})
    try:
        sb.files.write("/home/user/before-pause.txt", "still here")
        counter = sb.commands.run(
            "i=0; while true; do echo $i > /home/user/count.new; mv /home/user/count.new /home/user/count; "
            "i=$((i+1)); sleep 0.2; done", background=True)
        time.sleep(1.5)
        qemu_pid = int((platform.state / "sandboxes" / sb.sandbox_id / "qemu.pid").read_text())
        sb.pause()
        assert not psutil.pid_exists(qemu_pid), "a paused sandbox keeps no QEMU"
        info = Sandbox.get_info(sb.sandbox_id)
        assert info.state == SandboxState.PAUSED
        paused = Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED])).next_items()
        assert sb.sandbox_id in {s.sandbox_id for s in paused}
        assert Sandbox.pause(sb.sandbox_id) is False  # 409: already paused
        time.sleep(2)
        resumed = Sandbox.connect(sb.sandbox_id, timeout=120)
        assert resumed.files.read("/home/user/before-pause.txt") == "still here"
        first = int(resumed.files.read("/home/user/count"))
        time.sleep(1.5)
        second = int(resumed.files.read("/home/user/count"))
        assert second > first, "the background loop stopped across pause/resume"
        assert counter.pid in {p.pid for p in resumed.commands.list()}
        out = resumed.commands.run('echo "$KEPT"; date +%s.%N').stdout.split()
        assert out[0] == "yes"
        assert abs(float(out[1]) - time.time()) < 5  # clock set again after the resume
        assert Sandbox.get_info(sb.sandbox_id).state == SandboxState.RUNNING
    finally:
        Sandbox.kill(sb.sandbox_id)


# --- the API itself (raw HTTP: forms and errors the current SDKs do not produce) ---


def test_legacy_create_form_and_insecure_sandboxes(platform):
    api = httpx.Client(base_url=platform.api_url, headers={"X-API-KEY": "e2b_platform_test_key"})
    created = api.post("/sandboxes", json={"templateID": "base", "secure": False})
    assert created.status_code == 201, created.text
    body = created.json()
    try:
        assert body["envdAccessToken"] is None and body["templateID"] == "base"
        info = Sandbox.get_info(body["sandboxID"])
        assert 299 <= (info.end_at - info.started_at).total_seconds() <= 300  # no timeout given: 300 s
        # No token: envd in the VM serves requests that carry none.
        stat = httpx.post(f"{platform.sandbox_url}/filesystem.Filesystem/Stat", json={"path": "/etc"},
                          headers={"E2b-Sandbox-Id": body["sandboxID"], "Connect-Protocol-Version": "1"})
        assert stat.status_code == 200
        listed = api.get("/sandboxes").json()  # the v1 list: running ones
        assert body["sandboxID"] in {s["sandboxID"] for s in listed}
    finally:
        assert api.delete(f"/sandboxes/{body['sandboxID']}").status_code == 204
    assert api.delete(f"/sandboxes/{body['sandboxID']}").status_code == 404


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("POST", "/v2/sandboxes", {"timeout": 5}, 400, "templateID is required"),
    ("POST", "/v2/sandboxes", {"templateID": "base", "timeout": -1}, 400, "timeout must be a non-negative"),
    ("POST", "/v2/sandboxes", {"templateID": "base", "envVars": {"A": 1}}, 400, "envVars must be an object"),
    ("POST", "/v2/sandboxes", b"{not json", 400, "not JSON"),
    ("GET", "/v2/sandboxes?state=sleeping", None, 400, "unknown state filter sleeping"),
    ("GET", "/v2/sandboxes?limit=0", None, 400, "limit must be between 1 and 100"),
    ("POST", "/sandboxes/inope/timeout", {"timeout": 5}, 404, "sandbox 'inope' not found"),
    ("POST", "/sandboxes/inope/pause", {}, 404, "sandbox 'inope' not found"),
    ("GET", "/sandboxes/inope/metrics", None, 404, "sandbox 'inope' not found"),
    ("GET", "/templates", None, 404, "no route GET /templates"),
])
def test_api_errors_have_the_api_shape(platform, method, path, body, status, message):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    response = httpx.request(method, f"{platform.api_url}{path}", headers={"X-API-KEY": "e2b_platform_test_key"},
                             **kwargs)
    assert response.status_code == status
    assert response.json()["code"] == status and message in response.json()["message"]


def test_api_key_is_required(platform):
    missing = httpx.get(f"{platform.api_url}/v2/sandboxes")
    assert missing.status_code == 401 and missing.json() == {"code": 401, "message": "missing X-API-KEY header"}
    assert httpx.get(f"{platform.api_url}/v2/sandboxes", headers={"X-API-KEY": "nope"}).status_code == 401
    assert httpx.get(f"{platform.api_url}/health").status_code == 200  # readiness needs no key


def test_auto_pause_on_expiry(platform):
    api = httpx.Client(base_url=platform.api_url, headers={"X-API-KEY": "e2b_platform_test_key"})
    created = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 2, "autoPause": True})
    assert created.status_code == 201, created.text
    sandbox_id = created.json()["sandboxID"]
    try:
        deadline = time.monotonic() + 30
        while api.get(f"/sandboxes/{sandbox_id}").json()["state"] != "paused" and time.monotonic() < deadline:
            time.sleep(0.25)
        assert api.get(f"/sandboxes/{sandbox_id}").json()["state"] == "paused"
        resumed = Sandbox.connect(sandbox_id, timeout=60)
        assert resumed.commands.run("echo back").stdout == "back\n"
    finally:
        api.delete(f"/sandboxes/{sandbox_id}")


def test_proxy_passes_the_clients_headers_only(sandbox, platform):
    """A client sending no Accept-Encoding gets an uncompressed /files answer (the proxy adds none of its own)."""
    import http.client
    from urllib.parse import urlsplit

    sandbox.files.write("/home/user/plain.txt", "x" * 4000)
    target = urlsplit(platform.sandbox_url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    conn.putrequest("GET", "/files?path=/home/user/plain.txt", skip_accept_encoding=True)
    conn.putheader("E2b-Sandbox-Id", sandbox.sandbox_id)
    conn.putheader("X-Access-Token", sandbox._envd_access_token)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-encoding") is None
    assert response.read() == b"x" * 4000
    conn.close()
