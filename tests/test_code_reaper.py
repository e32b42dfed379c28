"""Kernels that do not watch their parent (Deno, IRkernel, JJava's two JVMs) still end with a SIGKILLed
daemon: the reaper (envd/services/code/reaper.py) kills their process groups once the daemon is gone."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import start_code_daemon, stop_daemon

pytestmark = pytest.mark.slow


def test_no_kernel_outlives_a_sigkilled_daemon(tmp_path: Path, sandbox_user: str) -> None:
    d, url = start_code_daemon(tmp_path, "-default-user", sandbox_user)
    try:
        for language in ("r", "java", "typescript"):
            r = httpx.post(f"{url}/contexts", json={"language": language}, timeout=120)
            assert r.status_code == 200, r.text
        names = {p.name() for p in psutil.Process(d.process.pid).children(recursive=True)}
        assert {"deno", "R", "java"} <= names, names
    except BaseException:
        stop_daemon(d)
        raise
    kernels = psutil.Process(d.process.pid).children(recursive=True)  # the reaper too: it ends after its work
    d.process.send_signal(signal.SIGKILL)
    d.process.wait()
    gone, alive = psutil.wait_procs(kernels, timeout=15)
    for process in alive:
        process.kill()
    assert alive == [], f"outlived the daemon: {[' '.join(p.cmdline())[:80] for p in alive]}"
