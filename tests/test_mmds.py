"""FC mode against loopback stand-ins for MMDS and the log collector (spec/envd.md §8.1, §8.2, §2.3, §3.4.2).

The daemons here run without -isnotfc (`-isnotfc=false` overrides the fixture's flag) and with
-mmds-address pointing at the stand-in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import stat
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, start_daemon, stop_daemon
from tests.mmds_standin import Collector, HangingCollector, MMDSStandIn
from tests.process_client import run_command, start_request


def fc_daemon(tmp_path: Path, mmds_url: str, *extra: str):
    return start_daemon(tmp_path, "-isnotfc=false", "-mmds-address", mmds_url, "-default-user", "user", *extra)


def wait_for_envs(daemon, key: str, value: str, timeout: float = 20.0, headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout
    envs = {}
    while time.monotonic() < deadline:
        envs = httpx.get(f"{daemon.url}/envs", headers=headers, timeout=5).json()
        if envs.get(key) == value:
            return envs
        time.sleep(0.05)
    raise AssertionError(f"{key} != {value!r} after {timeout} s: {envs}")


def child_env(daemon, *names: str, headers: dict | None = None) -> list[str]:
    script = "; ".join(f'printf "%s\\n" "${name}"' for name in names)
    outcome = asyncio.run(run_command(daemon.port, start_request("sh", ["-c", script]), headers=headers))
    assert outcome.end and outcome.end.get("exited"), outcome
    return outcome.stdout.decode().splitlines()


def h(value: str) -> str:
    return hashlib.sha512(value.encode()).hexdigest()


@pytest.fixture
def collector():
    with Collector() as c:
        yield c


def test_metadata_lands_in_envs_files_children_and_logs(tmp_path, sandbox_user, collector):
    with MMDSStandIn({"instanceID": "isb-abc", "envID": "tpl-xyz", "address": collector.url}) as mmds:
        daemon = fc_daemon(tmp_path, mmds.url)
        try:
            envs = wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-abc")
            assert envs["E2B_TEMPLATE_ID"] == "tpl-xyz" and envs["E2B_SANDBOX"] == "true"
            for name, value in ((".E2B_SANDBOX_ID", "isb-abc"), (".E2B_TEMPLATE_ID", "tpl-xyz"), (".E2B_SANDBOX", "true")):
                assert (daemon.run_dir / name).read_text() == value  # no newline
            mode = stat.S_IMODE((daemon.run_dir / ".E2B_SANDBOX_ID").stat().st_mode)
            assert mode & 0o644 == 0o644 and not mode & 0o111
            # Spawned processes get the internal env vars (§6.3).
            assert child_env(daemon, "E2B_SANDBOX_ID", "E2B_TEMPLATE_ID", "E2B_SANDBOX") == ["isb-abc", "tpl-xyz", "true"]
            # Startup logs were queued before MMDS answered, then shipped with its fields (§8.2).
            lines = collector.wait_for(lambda line: line["message"] == "envd listening")
            assert all(line["instanceID"] == "isb-abc" and line["envID"] == "tpl-xyz" for line in lines)
            assert {"timestamp", "level", "logger", "message"} <= set(lines[0])
            # The token flow: every GET carried a token the stand-in issued on a PUT with the TTL header.
            puts = [r for r in mmds.requests if r[0] == "PUT"]
            assert puts and all(r[2]["X-metadata-token-ttl-seconds"] == "60" for r in puts)
        finally:
            stop_daemon(daemon)


def test_serves_while_mmds_is_down_and_picks_it_up_later(tmp_path, sandbox_user, collector):
    port = free_port()
    daemon = fc_daemon(tmp_path, f"http://127.0.0.1:{port}")
    try:
        time.sleep(0.5)  # the poller has failed several times by now
        assert httpx.get(f"{daemon.url}/health", timeout=5).status_code == 204
        envs = httpx.get(f"{daemon.url}/envs", timeout=5).json()
        assert "E2B_SANDBOX_ID" not in envs and envs["E2B_SANDBOX"] == "true"
        assert child_env(daemon, "E2B_SANDBOX") == ["true"]
        # /init with MMDS absent: first-time setup may set a token (§2.3 rule 3).
        r = httpx.post(f"{daemon.url}/init", json={"accessToken": "first"}, timeout=30)
        assert r.status_code == 204
        auth = {"X-Access-Token": "first"}
        assert not (daemon.run_dir / ".E2B_SANDBOX_ID").exists()
        with MMDSStandIn({"instanceID": "isb-late", "envID": "tpl-late", "address": collector.url}, port=port):
            wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-late", headers=auth)
            assert (daemon.run_dir / ".E2B_SANDBOX_ID").read_text() == "isb-late"
            assert child_env(daemon, "E2B_SANDBOX_ID", headers=auth) == ["isb-late"]
            collector.wait_for(lambda line: line.get("instanceID") == "isb-late")
    finally:
        stop_daemon(daemon)


def test_init_checks_the_mmds_token_hash_and_repolls(tmp_path, sandbox_user):
    with MMDSStandIn({"instanceID": "isb-1", "envID": "tpl-1", "accessTokenHash": h("tok1")}) as mmds:
        daemon = fc_daemon(tmp_path, mmds.url)
        try:
            wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-1")
            # MMDS present: even the first token must match its hash (§2.3 rule 2, rule 3 does not apply).
            r = httpx.post(f"{daemon.url}/init", json={"accessToken": "other"}, timeout=30)
            assert (r.status_code, r.text) == (401, "access token validation failed")
            assert httpx.post(f"{daemon.url}/init", json={"accessToken": "tok1"}, timeout=30).status_code == 204
            # A resumed snapshot: new sandbox id and token hash; /init fetches the hash afresh and re-polls.
            mmds.metadata.update(instanceID="isb-2", accessTokenHash=h("tok2"))
            assert httpx.post(f"{daemon.url}/init", json={"accessToken": "tok2"}, timeout=30).status_code == 204
            auth = {"X-Access-Token": "tok2"}
            wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-2", headers=auth)
            assert (daemon.run_dir / ".E2B_SANDBOX_ID").read_text() == "isb-2"
            assert httpx.get(f"{daemon.url}/envs", headers={"X-Access-Token": "tok1"}, timeout=5).status_code == 401
            # Clearing the token needs the hash of "" (§2.3).
            r = httpx.post(f"{daemon.url}/init", json={}, timeout=30)
            assert (r.status_code, r.text) == (401, "access token reset not authorized")
            mmds.metadata["accessTokenHash"] = h("")
            assert httpx.post(f"{daemon.url}/init", json={}, timeout=30).status_code == 204
            assert httpx.get(f"{daemon.url}/envs", timeout=5).status_code == 200
        finally:
            stop_daemon(daemon)


def test_logs_reach_the_collector_without_secrets(tmp_path, sandbox_user, collector):
    with MMDSStandIn({"instanceID": "isb-log", "envID": "tpl-log", "address": collector.url}) as mmds:
        daemon = fc_daemon(tmp_path, mmds.url, "-verbose")
        try:
            wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-log")
            assert httpx.post(f"{daemon.url}/init", json={"accessToken": "s3cret-token-value"}, timeout=30).status_code == 204
            outcome = asyncio.run(run_command(daemon.port, start_request("echo", ["payload-not-logged"]),
                                              headers={"X-Access-Token": "s3cret-token-value"}))
            assert outcome.end and outcome.end.get("exited")
            lines = collector.wait_for(lambda line: line["message"] == "process ended")
            assert all(line["instanceID"] == "isb-log" and line["envID"] == "tpl-log" for line in lines)
            shipped = json.dumps(lines)
            assert "s3cret-token-value" not in shipped and "payload-not-logged\\n" not in shipped
        finally:
            stop_daemon(daemon)


def exporter_errors(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if re.match(r"envd: log export to .* failed", line)]


@pytest.mark.parametrize("collector_kind", ["refusing", "hanging"])
def test_a_dead_collector_never_blocks_requests(tmp_path, sandbox_user, collector_kind):
    hanging = HangingCollector() if collector_kind == "hanging" else None
    address = hanging.url if hanging else f"http://127.0.0.1:{free_port()}"
    with MMDSStandIn({"instanceID": "isb-d", "envID": "tpl-d", "address": address}) as mmds:
        daemon = fc_daemon(tmp_path, mmds.url, "-verbose")  # -verbose: a log line per request
        try:
            wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-d")
            slowest = 0.0
            with httpx.Client(timeout=10) as client:
                for _ in range(60):
                    started = time.monotonic()
                    assert client.get(f"{daemon.url}/envs").status_code == 200
                    slowest = max(slowest, time.monotonic() - started)
            # A POST to the hanging collector takes 10 s; no request waited for one.
            assert slowest < 3, slowest
            if collector_kind == "refusing":
                errors = exporter_errors(tmp_path / "envd.log")
                assert len(errors) == 1, errors  # dozens of failed lines, one report a minute
        finally:
            stop_daemon(daemon)
            if hanging:
                hanging.close()


def test_the_last_lines_are_shipped_at_shutdown(tmp_path, sandbox_user, collector):
    with MMDSStandIn({"instanceID": "isb-end", "envID": "tpl-end", "address": collector.url}) as mmds:
        daemon = fc_daemon(tmp_path, mmds.url)
        wait_for_envs(daemon, "E2B_SANDBOX_ID", "isb-end")
        stop_daemon(daemon)
        assert daemon.process.returncode == 0
        lines = collector.wait_for(lambda line: line["message"] == "envd stopped", timeout=5)
        assert lines[-1]["instanceID"] == "isb-end"
