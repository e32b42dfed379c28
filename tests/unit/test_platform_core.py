"""envd/platform pieces that need no VM: the machine command line, signature routing, metric mapping,
stream parsing, /init's entropy field."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import pytest
from e2b.sandbox.signature import get_signature

from envd.api.sandbox import InitBodyError, InitRequest
from envd.platform.api import metric_json
from envd.platform.guest import stdout_of
from envd.platform.proxy import Proxy
from envd.platform.qemu import Machine


def test_restore_command_line_differs_from_the_save_only_where_allowed(tmp_path):
    """vm-snapshots.md gotcha 4: same -m and devices on both sides; only disk, RAM sharing, run files, -incoming."""
    machine = Machine(kernel=Path("/k"), initrd=Path("/i"), ram_file=Path("/t/ram"), memory_mib=512, tsc_khz=2000000)
    save = machine.command(disk=Path("/t/disk.qcow2"), run_dir=Path("/t/boot"), share_ram=True, incoming=False)
    restore = machine.command(disk=Path("/s/disk.qcow2"), run_dir=Path("/s"), share_ram=False, incoming=True)
    assert restore[-2:] == ["-incoming", "defer"]
    differing = [(a, b) for a, b in zip(save, restore[:-2]) if a != b]
    assert differing == [
        ("memory-backend-file,id=mem0,size=512M,mem-path=/t/ram,share=on",
         "memory-backend-file,id=mem0,size=512M,mem-path=/t/ram,share=off"),
        ("id=root,file=/t/disk.qcow2,format=qcow2,if=none", "id=root,file=/s/disk.qcow2,format=qcow2,if=none"),
        ("file:/t/boot/serial.log", "file:/s/serial.log"),
        ("unix:/t/boot/qmp.sock,server=on,wait=off", "unix:/s/qmp.sock,server=on,wait=off"),
        ("/t/boot/qemu.pid", "/s/qemu.pid"),
    ]
    assert "tsc_early_khz=2000000 tsc=reliable" in save[save.index("-append") + 1]


def _bare_proxy(sandboxes: dict) -> Proxy:
    proxy = object.__new__(Proxy)
    proxy.manager = SimpleNamespace(sandboxes=sandboxes)
    return proxy


def _scope(method: str, query: str, headers: dict[str, str] | None = None) -> dict:
    return {"method": method, "path": "/files", "query_string": query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}


@pytest.mark.parametrize("expiration", [None, 3600, -10])
@pytest.mark.parametrize(("method", "operation"), [("GET", "read"), ("POST", "write")])
def test_signed_urls_route_to_the_sandbox_whose_token_signed_them(method, operation, expiration):
    proxy = _bare_proxy({"ia": SimpleNamespace(id="ia", access_token="token-a"),
                         "ib": SimpleNamespace(id="ib", access_token="token-b"),
                         "ic": SimpleNamespace(id="ic", access_token=None)})
    sig = get_signature("/home/user/f.txt", operation, "user", "token-b", expiration)  # the SDK's own signer
    params = {"path": "/home/user/f.txt", "username": "user", "signature": sig["signature"]}
    if sig["expiration"] is not None:
        params["signature_expiration"] = sig["expiration"]
    query = urlencode(params)
    assert proxy.route(_scope(method, query)) == ("ib", 49983)
    assert proxy.route(_scope(method, query.replace("username=user", "username=root")))[0] is None
    other = "read" if operation == "write" else "write"
    assert proxy.route(_scope("GET" if other == "read" else "POST", query))[0] is None


def test_headers_then_host_decide_before_signatures():
    proxy = _bare_proxy({})
    assert proxy.route(_scope("GET", "", {"E2b-Sandbox-Id": "iabc", "E2b-Sandbox-Port": "49999"})) == ("iabc", 49999)
    assert proxy.route(_scope("GET", "", {"E2b-Sandbox-Id": "iabc"})) == ("iabc", 49983)
    assert proxy.route(_scope("GET", "", {"E2b-Sandbox-Id": "iabc", "E2b-Sandbox-Port": "x"})) == ("iabc", -1)
    assert proxy.route(_scope("GET", "", {"Host": "8080-iabc123.localhost:3001"})) == ("iabc123", 8080)
    assert proxy.route(_scope("GET", "", {"Host": "localhost:3001"})) == (None, 49983)


def test_metric_mapping():
    raw = {"ts": 1700000000, "cpu_count": 2, "cpu_used_pct": 1.5, "mem_used": 10, "mem_total": 20,
           "mem_cache": 3, "disk_used": 4, "disk_total": 5, "mem_used_mib": 0}
    assert metric_json(raw) == {"timestamp": "2023-11-14T22:13:20.000Z", "timestampUnix": 1700000000,
                                "cpuCount": 2, "cpuUsedPct": 1.5, "memUsed": 10, "memTotal": 20, "memCache": 3,
                                "diskUsed": 4, "diskTotal": 5}


def test_stdout_of_a_process_stream():
    def env(flags: int, payload: dict) -> bytes:
        data = json.dumps(payload).encode()
        return struct.pack(">BI", flags, len(data)) + data

    stream = (env(0, {"event": {"start": {"pid": 7}}})
              + env(0, {"event": {"data": {"stdout": base64.b64encode(b"0.6.").decode()}}})
              + env(0, {"event": {"data": {"stderr": base64.b64encode(b"warn").decode()}}})
              + env(0, {"event": {"data": {"stdout": base64.b64encode(b"13\n").decode()}}})
              + env(0, {"event": {"end": {"exited": True}}}) + env(2, {}))
    assert stdout_of(stream) == "0.6.13\n"


def test_init_entropy_field():
    assert InitRequest.parse(b'{"entropy": "AAEC/w=="}').entropy == b"\x00\x01\x02\xff"
    assert InitRequest.parse(b"{}").entropy == b""
    with pytest.raises(InitBodyError, match="entropy must be base64"):
        InitRequest.parse(b'{"entropy": "not base64!"}')
    with pytest.raises(InitBodyError, match="entropy must be a string"):
        InitRequest.parse(b'{"entropy": 5}')


def test_envd_platform_subcommand():
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-m", "envd", "platform", "--help"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "E2B_API_URL" in out and "E2B_SANDBOX_URL" in out and "--max-sandboxes" in out
    # The daemon's own flags are untouched by the subcommand.
    version = subprocess.run([sys.executable, "-m", "envd", "-version"], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout
    assert version.strip().count(".") == 2
