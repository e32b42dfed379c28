"""Start-up files and a clean SIGTERM shutdown, even with streams and watchers open."""

import json
import signal
import struct
import threading
import time

import httpx

from tests.conftest import start_daemon


def test_sigterm_with_open_streams_exits_cleanly(tmp_path, sandbox_user):
    daemon = start_daemon(tmp_path, "-default-user", sandbox_user)
    watched = tmp_path / "watched"
    watched.mkdir()
    started = threading.Event()
    ended = threading.Event()

    def hold_watch_stream() -> None:
        body = json.dumps({"path": str(watched)}).encode()
        headers = {"content-type": "application/connect+json", "keepalive-ping-interval": "1"}
        try:
            with httpx.stream(
                "POST", f"{daemon.url}/filesystem.Filesystem/WatchDir",
                content=struct.pack(">BI", 0, len(body)) + body, headers=headers, timeout=30,
            ) as response:
                for _ in response.iter_bytes():
                    started.set()
        except httpx.HTTPError:
            pass
        ended.set()

    threading.Thread(target=hold_watch_stream, daemon=True).start()
    assert started.wait(10), "the watch stream did not start"
    r = httpx.post(
        f"{daemon.url}/filesystem.Filesystem/CreateWatcher",
        json={"path": str(watched), "recursive": True},
        headers={"connect-protocol-version": "1"},
    )
    assert r.status_code == 200

    begin = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(15) == 0
    assert time.monotonic() - begin < 10
    assert ended.wait(5), "the client's stream was left hanging"
    assert (daemon.run_dir / ".E2B_SANDBOX").read_text() == "false"
    assert oct((daemon.run_dir / ".E2B_SANDBOX").stat().st_mode & 0o777) == "0o444"


def test_rpcs_right_after_health_wait_for_the_services_to_load(tmp_path, sandbox_user):
    # /health answers before the RPC stack is imported; an RPC in that window must wait, not 404.
    daemon = start_daemon(tmp_path, "-default-user", sandbox_user)
    try:
        r = httpx.post(
            f"{daemon.url}/filesystem.Filesystem/Stat", json={"path": "/"}, headers={"connect-protocol-version": "1"}
        )
        assert r.status_code == 200 and r.json()["entry"]["path"] == "/"
    finally:
        daemon.process.terminate()
        daemon.process.wait(10)
