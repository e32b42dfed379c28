"""POST /upgrade: live self-upgrade by re-exec in place (spec/envd.md §3.12, §2.2 step 4).

The daemon re-execs itself (same pid, `-resume-handover` added) while processes started through the RPC keep
running: a busy counter (kept frozen until the next /init), a pipe process and a PTY process whose input and
output still work through the new envd. A private cgroup2 root makes the freeze real.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import httpx
import pytest

from envd.host import handover as handover_module
from envd.host.freezer import Freezer
from envd.host.handover import Handover
from tests.conftest import start_daemon, stop_daemon
from tests.test_freeze import (COUNTER, assert_moving, assert_still, busy_in, freeze_setting, groups,  # noqa: F401
                               stuck_writer, wait_for)
from tests.test_fsfreeze import loop_fs  # noqa: F401 (fixture)
from tests.unit.test_cgroups import cgroup2_mount, cgroup_parent, reap  # noqa: F401 (fixtures)

CONNECT_JSON = {"content-type": "application/connect+json"}


def envelope(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack(">BI", 0, len(body)) + body


def messages(data: bytes) -> list[dict]:
    out, pos = [], 0
    while len(data) - pos >= 5:
        length = struct.unpack(">I", data[pos + 1:pos + 5])[0]
        if len(data) - pos - 5 < length:
            break
        out.append(json.loads(data[pos + 5:pos + 5 + length]))
        pos += 5 + length
    return out


def output(data: bytes) -> str:
    """All process output (stdout, stderr, pty) in a Connect JSON stream so far, decoded."""
    text = ""
    for message in messages(data):
        chunk = message.get("event", {}).get("data", {})
        for value in chunk.values():
            text += base64.b64decode(value).decode(errors="replace")
    return text


def stream_until(url: str, procedure: str, message: dict, done, timeout: float = 20) -> bytes:
    """Read a Connect JSON stream until done(data) (then leave: the process keeps running)."""
    data = b""
    with httpx.stream("POST", f"{url}/process.Process/{procedure}", content=envelope(message),
                      headers=CONNECT_JSON, timeout=timeout) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            data += chunk
            if done(data):
                return data
    raise AssertionError(f"stream ended: {data!r}")


def start(url: str, request: dict) -> int:
    data = stream_until(url, "Start", request, lambda data: messages(data))
    return int(messages(data)[0]["event"]["start"]["pid"])


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 204
    except httpx.TransportError:
        return False


def test_upgrade_guards(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        before = httpx.post(f"{daemon.url}/upgrade", timeout=10)
        assert (before.status_code, before.text) == (409, "envd not initialized")
        assert httpx.post(f"{daemon.url}/init", json={}, timeout=10).status_code == 204
        for target in ("/tmp/envd-evil", "/usr/bin/envd", "/usr/bin/envd.next/../evil"):
            refused = httpx.post(f"{daemon.url}/upgrade", headers={"x-envd-upgrade-bin": target}, timeout=10)
            assert (refused.status_code, refused.text) == (400, "unsupported upgrade target")
        delivered = Path("/usr/bin/envd.next")
        existed = delivered.exists()
        body = httpx.post(f"{daemon.url}/upgrade", content=b"#!/bin/sh\n", timeout=10)
        assert body.status_code == 501 and "send an empty body" in body.text
        assert delivered.exists() == existed  # nothing written
        assert "-resume-handover" not in cmdline(daemon.process.pid)  # still the first process image
        assert healthy(daemon.url)
    finally:
        stop_daemon(daemon)


@pytest.mark.slow
def test_processes_survive_a_live_upgrade(tmp_path: Path, groups: Path) -> None:  # noqa: F811
    daemon = start_daemon(tmp_path, "-cgroup-root", str(groups))
    url = daemon.url
    pids: list[int] = []
    try:
        assert httpx.post(f"{url}/init", json={"envVars": {"BEFORE": "1"}}, timeout=10).status_code == 204
        counter = tmp_path / "counter"
        pids.append(start(url, {"process": {"cmd": "python3", "args": ["-c", COUNTER, str(counter)]}}))
        pipe = start(url, {"process": {"cmd": "/bin/sh", "args": ["-c", "read l; echo pipe:$l; exec sleep 600"]},
                           "stdin": True})
        pty = start(url, {"process": {"cmd": "/bin/sh", "args": ["-c", "read l; echo pty:$l; exec sleep 600"]},
                          "pty": {"size": {"cols": 80, "rows": 24}}})
        pids += [pipe, pty]
        wait_for(lambda: counter.exists(), what="the counter")
        assert_moving(counter)

        with pytest.raises(httpx.TransportError):  # success = no answer: the old process image is gone
            httpx.post(f"{url}/upgrade", timeout=30)
        wait_for(lambda: healthy(url), what="the upgraded envd")
        assert "-resume-handover" in cmdline(daemon.process.pid)  # same pid, new image

        # Until /init: only /health and /init pass; the workload stays frozen.
        gated = httpx.get(f"{url}/envs", timeout=10)
        assert (gated.status_code, gated.json()) == (401, {"code": 401, "message": "envd not initialized"})
        assert freeze_setting(groups / "user") == "1"
        assert_still(counter)

        init = httpx.post(f"{url}/init", json={"envVars": {"AFTER": "1"}}, timeout=30)
        assert init.status_code == 204
        assert json.loads(init.headers["x-envd-handover"]) == {
            "failed": False, "procs": 3, "procs_failed": 0, "retained": 0, "retained_failed": 0,
            "watchers": 0, "watchers_failed": 0}
        assert_moving(counter)
        listed = httpx.post(f"{url}/process.Process/List", json={}, timeout=10).json()["processes"]
        assert sorted(p["pid"] for p in listed) == sorted(pids)

        # The carried pipes and terminal still work both ways.
        for pid, field, expected in ((pipe, "stdin", "pipe:hello"), (pty, "pty", "pty:hello")):
            def send(pid=pid, field=field) -> None:
                time.sleep(0.3)
                answer = httpx.post(f"{url}/process.Process/SendInput", timeout=10, json={
                    "process": {"pid": pid}, "input": {field: base64.b64encode(b"hello\n").decode()}})
                assert answer.status_code == 200, answer.text

            sender = threading.Thread(target=send)
            sender.start()
            stream_until(url, "Connect", {"process": {"pid": pid}}, lambda data: expected in output(data))
            sender.join()

        # A process ending after the upgrade is reaped and reported by the new envd.
        answer = httpx.post(f"{url}/process.Process/SendSignal", timeout=10,
                            json={"process": {"pid": pids[0]}, "signal": "SIGNAL_SIGKILL"})
        assert answer.status_code == 200
        wait_for(lambda: pids[0] not in [p["pid"] for p in httpx.post(
            f"{url}/process.Process/List", json={}, timeout=10).json()["processes"]], what="the counter's end")
        assert not Path(f"/proc/{pids[0]}").exists()  # reaped, not a zombie
    finally:
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        stop_daemon(daemon)


def test_an_upgrade_whose_workload_does_not_freeze_is_abandoned(tmp_path: Path, groups: Path, stuck_writer) -> None:  # noqa: F811
    daemon = start_daemon(tmp_path, "-cgroup-root", str(groups))
    try:
        assert httpx.post(f"{daemon.url}/init", json={}, timeout=10).status_code == 204
        answer = httpx.post(f"{daemon.url}/upgrade", timeout=30)
        assert answer.status_code == 500
        assert answer.text.startswith("workload did not freeze within 2000 ms")
        assert freeze_setting(groups / "user") == "0"  # thawed again
        assert "-resume-handover" not in cmdline(daemon.process.pid)
        assert not (tmp_path / "run" / "envd-handover.json").exists()
        assert httpx.get(f"{daemon.url}/envs", timeout=10).status_code == 200  # still serving, as before
    finally:
        stop_daemon(daemon)


def test_a_resume_without_a_handover_file_reports_failure_and_serves(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, "-resume-handover")
    try:
        init = httpx.post(f"{daemon.url}/init", json={}, timeout=10)
        assert init.status_code == 204
        assert json.loads(init.headers["x-envd-handover"])["failed"] is True
        assert httpx.get(f"{daemon.url}/envs", timeout=10).status_code == 200
    finally:
        stop_daemon(daemon)


def test_fallback_thaw_when_no_init_follows_an_upgrade(groups: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(handover_module, "FALLBACK_THAW_S", 0.5)
    counter = tmp_path / "counter"
    child = busy_in(groups / "user", counter)
    try:
        async def scenario() -> None:
            freezer = Freezer(str(groups), [str(groups / "user")])
            await freezer.freeze("legacy", 512, 5000)
            handover = Handover(str(tmp_path), freezer)
            handover.arm_fallback_thaw()
            await asyncio.to_thread(wait_for, lambda: freeze_setting(groups / "user") == "0", 20, "fallback thaw")

            await freezer.freeze("legacy", 512, 5000)  # an /init in time disarms it
            handover.arm_fallback_thaw()
            handover.initialized()
            await asyncio.sleep(1.0)
            assert freeze_setting(groups / "user") == "1"
            await freezer.thaw()

        asyncio.run(scenario())
    finally:
        reap(child)


def test_an_upgrade_that_cannot_write_its_handover_keeps_the_old_envd(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        assert httpx.post(f"{daemon.url}/init", json={}, timeout=10).status_code == 204
        shutil.rmtree(daemon.run_dir)  # the handover file has nowhere to go
        answer = httpx.post(f"{daemon.url}/upgrade", timeout=30)
        assert answer.status_code == 500
        assert answer.text.startswith("live upgrade failed: [Errno 2] No such file or directory")
        assert "-resume-handover" not in cmdline(daemon.process.pid)
        assert httpx.get(f"{daemon.url}/envs", timeout=10).status_code == 200
    finally:
        stop_daemon(daemon)
    assert "port scan failed" not in (tmp_path / "envd.log").read_text()
