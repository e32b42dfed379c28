"""MMDS client and poller (spec/envd.md §8.1) against the loopback stand-in, with a real event loop."""

import asyncio
import os
import stat

import pytest

from envd.host.mmds import MMDS, Metadata, MMDSClient, MMDSError
from envd.state import SandboxState
from tests.conftest import free_port
from tests.mmds_standin import MMDSStandIn

METADATA = {"instanceID": "isb-1", "envID": "tpl-1", "address": "http://127.0.0.1:9/logs", "accessTokenHash": "ab"}


def test_client_follows_the_token_flow():
    with MMDSStandIn(METADATA) as mmds:
        assert MMDSClient(mmds.url).fetch() == Metadata("isb-1", "tpl-1", "http://127.0.0.1:9/logs", "ab")
        (put_method, put_path, put_headers), (get_method, get_path, get_headers) = mmds.requests
        assert (put_method, put_path, put_headers["X-metadata-token-ttl-seconds"]) == ("PUT", "/latest/api/token", "60")
        assert (get_method, get_path, get_headers["Accept"]) == ("GET", "/", "application/json")
        assert get_headers["X-metadata-token"] in mmds.tokens
        assert get_headers["Connection"] == "close"  # no connection reuse


def test_missing_keys_are_empty_and_non_objects_fail():
    assert Metadata.from_json(b'{"instanceID":"x","envID":7}') == Metadata(instance_id="x")
    for body in (b"[]", b"not json", b""):
        with pytest.raises(MMDSError):
            Metadata.from_json(body)


def test_unreachable_or_refusing_mmds_is_an_error():
    with pytest.raises(MMDSError):
        MMDSClient(f"http://127.0.0.1:{free_port()}", timeout=2).fetch()
    with MMDSStandIn(METADATA) as mmds:
        mmds.tokens = _Forgetful()  # hands out tokens it then does not accept: GET answers 401
        with pytest.raises(MMDSError, match="401"):
            MMDSClient(mmds.url).fetch()


class _Forgetful(set):
    def add(self, _token) -> None:
        pass


@pytest.mark.asyncio
async def test_poller_waits_for_mmds_then_applies_it(tmp_path):
    port = free_port()
    state = SandboxState()
    seen = []
    mmds = MMDS(state, str(tmp_path / "run"), MMDSClient(f"http://127.0.0.1:{port}", timeout=2), enabled=True,
                listeners=[seen.append])
    mmds.start()
    await asyncio.sleep(0.3)  # several failed polls
    assert "E2B_SANDBOX_ID" not in state.envs.all() and not seen
    with MMDSStandIn(METADATA, port=port):
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.05)
    assert seen == [Metadata("isb-1", "tpl-1", "http://127.0.0.1:9/logs", "ab")]
    assert state.envs.all()["E2B_SANDBOX_ID"] == "isb-1"
    assert state.envs.all()["E2B_TEMPLATE_ID"] == "tpl-1"
    sandbox_file = tmp_path / "run" / ".E2B_SANDBOX_ID"
    assert sandbox_file.read_text() == "isb-1"
    assert (tmp_path / "run" / ".E2B_TEMPLATE_ID").read_text() == "tpl-1"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(sandbox_file.stat().st_mode) == 0o666 & ~umask
    await mmds.close()


@pytest.mark.asyncio
async def test_token_hash_is_fetched_fresh_and_absent_when_empty_or_down(tmp_path):
    with MMDSStandIn(METADATA) as stand_in:
        mmds = MMDS(SandboxState(), str(tmp_path), MMDSClient(stand_in.url), enabled=True)
        assert await mmds.token_hash() == "ab"
        stand_in.metadata["accessTokenHash"] = "cd"
        assert await mmds.token_hash() == "cd"
        stand_in.metadata["accessTokenHash"] = ""
        assert await mmds.token_hash() is None
        local = MMDS(SandboxState(), str(tmp_path), MMDSClient(stand_in.url), enabled=False)
        served = stand_in.served
        assert await local.token_hash() is None
        assert stand_in.served == served  # local mode never asks
    down = MMDS(SandboxState(), str(tmp_path), MMDSClient(f"http://127.0.0.1:{free_port()}", timeout=2), enabled=True)
    assert await down.token_hash() is None


def test_mmds_address_flag():
    from envd.__main__ import config_from_args, parse_args

    assert config_from_args(parse_args([])).mmds_address == "http://169.254.169.254"
    assert config_from_args(parse_args(["-mmds-address=http://127.0.0.1:8080"])).mmds_address == "http://127.0.0.1:8080"
    # The test daemons run in FC mode by overriding the fixture's -isnotfc: the last occurrence wins.
    assert config_from_args(parse_args(["-isnotfc", "-isnotfc=false"])).is_not_fc is False


@pytest.mark.asyncio
async def test_route_self_heal_repins_the_bypass_once_for_concurrent_callers(tmp_path, monkeypatch):
    # A stand-in `iptables` on PATH: the real one would rewrite this machine's NAT table.
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "iptables"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nsleep 0.2\n[ "$5" = "-D" ] && exit 1\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    from envd.host.mmds import RouteSelfHeal

    heal = RouteSelfHeal()
    await asyncio.gather(heal.run(), heal.run())  # the second caller finds one running and skips
    rule = "-d 169.254.169.254 -p tcp --dport 80 -j RETURN"
    assert calls.read_text().splitlines() == [
        f"-w 5 -t nat -D PREROUTING {rule}",
        f"-w 5 -t nat -I PREROUTING 1 {rule}",
        f"-w 5 -t nat -D OUTPUT {rule}",
        f"-w 5 -t nat -I OUTPUT 1 {rule}",
    ]


def test_self_heal_only_for_the_real_metadata_address(tmp_path):
    real = MMDS(SandboxState(), str(tmp_path), MMDSClient(), enabled=True)
    standin = MMDS(SandboxState(), str(tmp_path), MMDSClient("http://127.0.0.1:8080"), enabled=True)
    assert real._self_heal is not None and standin._self_heal is None
