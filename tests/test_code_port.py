"""The code port's place in the daemon's life: a busy port does not take envd down, and kernels never outlive
the daemon (SIGTERM shuts them down; after SIGKILL ipykernel's parent poller ends them)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import start_code_daemon, start_daemon, stop_daemon

pytestmark = pytest.mark.slow


def kernels_of(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]


def test_busy_code_port_leaves_envd_serving(tmp_path: Path, sandbox_user: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        d = start_daemon(tmp_path, "-default-user", sandbox_user, "-code-port", str(busy))
        try:
            assert httpx.get(f"{d.url}/health").status_code == 204
            assert f"code port {busy} unavailable" in (tmp_path / "envd.log").read_text()
            assert kernels_of(d.process.pid) == []
        finally:
            stop_daemon(d)


def test_kernels_end_with_the_daemon(tmp_path: Path, sandbox_user: str) -> None:
    (tmp_path / "a").mkdir()
    d, _ = start_code_daemon(tmp_path / "a", "-default-user", sandbox_user)
    kernels = kernels_of(d.process.pid)
    assert len(kernels) == 1  # the default python context
    stop_daemon(d)  # SIGTERM: contexts are shut down before the daemon exits 0
    assert d.process.returncode == 0
    assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels)

    (tmp_path / "b").mkdir()
    d, _ = start_code_daemon(tmp_path / "b", "-default-user", sandbox_user)
    kernels = kernels_of(d.process.pid)
    d.process.send_signal(signal.SIGKILL)
    d.process.wait()
    gone, alive = psutil.wait_procs(kernels, timeout=10)
    assert alive == [], "a kernel outlived a SIGKILLed daemon"
