"""The local platform (`envd platform`) as the SDKs meet it: a real process, real QEMU microVMs.

Runs only when ENVD_PLATFORM_IMAGES names the built images (build/vm with base/ and, for the code
interpreter tests, code-interpreter/); `make platform-test` sets it after `make rootfs`. Saved template states
live in ENVD_PLATFORM_STATE (default build/platform-test) and are reused while the image is unchanged, so a
run pays one cold boot per template at most. One platform process per test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, free_port

IMAGES = os.environ.get("ENVD_PLATFORM_IMAGES")
STATE = Path(os.environ.get("ENVD_PLATFORM_STATE", ROOT / "build" / "platform-test"))
API_KEY = "e2b_platform_test_key"
PREPARE_TIMEOUT = 900  # a cold TCG boot + warm-up of both templates on a loaded 2-core host


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.vm)
            item.add_marker(pytest.mark.slow)
            # A module's first test also waits for its platform, which may cold boot a template under TCG.
            item.add_marker(pytest.mark.timeout(PREPARE_TIMEOUT + 120))
            if not IMAGES:
                item.add_marker(pytest.mark.skip(
                    reason="platform suite: set ENVD_PLATFORM_IMAGES to `make rootfs` output (`make platform-test`)"))


@dataclass
class Platform:
    api_url: str
    sandbox_url: str
    state: Path
    process: subprocess.Popen
    log: Path

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.api_url}/health", timeout=5) as response:
            return json.load(response)

    def qemu_pids(self) -> list[int]:
        """QEMU processes whose files live in this platform's state directory."""
        pids = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and cmdline[0].startswith("qemu-system") and any(str(self.state) in a for a in cmdline):
                pids.append(proc.pid)
        return pids

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_platform(templates: str = "base", *extra: str) -> Platform:
    state = STATE  # read at call time: the benchmark points it at a fresh directory
    port, proxy_port = free_port(), free_port()
    state.mkdir(parents=True, exist_ok=True)
    log = state / f"platform-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "envd", "platform", "--port", str(port), "--proxy-port", str(proxy_port),
         "--api-key", API_KEY, "--images", IMAGES, "--state", str(state), "--templates", templates,
         *extra],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    platform = Platform(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proxy_port}", state.resolve(), process, log)
    deadline = time.monotonic() + PREPARE_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"platform exited ({process.returncode}):\n{platform.log_tail()}")
        try:
            states = platform.health()["templates"]
            if all(s != "preparing" for s in states.values()):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_platform(platform)
            raise RuntimeError(f"templates not ready within {PREPARE_TIMEOUT} s:\n{platform.log_tail()}")
        time.sleep(0.5)
    return platform


def stop_platform(platform: Platform) -> None:
    if platform.process.poll() is None:
        platform.process.send_signal(signal.SIGTERM)
        try:
            platform.process.wait(60)
        except subprocess.TimeoutExpired:
            platform.process.kill()
            platform.process.wait()


def sdk_env(platform: Platform) -> dict[str, str]:
    """Normal (non-debug) SDK configuration pointing at the platform."""
    return {"E2B_API_URL": platform.api_url, "E2B_SANDBOX_URL": platform.sandbox_url, "E2B_API_KEY": API_KEY}


@contextlib.contextmanager
def running_platform(templates: str, *extra: str) -> Iterator[Platform]:
    """A platform serving `templates` with the SDK environment pointing at it; on exit, checks that stopping it
    left no QEMU and no sandbox directory behind."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("E2B_")}
    plat = start_platform(templates, *extra)
    os.environ.update(sdk_env(plat))
    try:
        yield plat
    finally:
        for key in sdk_env(plat):
            os.environ.pop(key, None)
        os.environ.update(saved)
        stop_platform(plat)
        # Stopping the platform stops its VMs and removes their disks.
        assert plat.qemu_pids() == [], f"QEMU left running after platform stop:\n{plat.log_tail()}"
        assert not list((plat.state / "sandboxes").iterdir()), "sandbox directories left after stop"


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    with running_platform("base") as plat:
        health = plat.health()
        if health["templates"].get("base") != "ready":
            pytest.fail(f"template base not ready: {health}\n{plat.log_tail()}")
        yield plat
