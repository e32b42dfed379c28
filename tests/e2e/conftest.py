"""Fixtures shared by the SDK suites: the SDKs pointed at a test daemon in debug mode."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b_code_interpreter import Sandbox

from tests.conftest import Daemon, start_code_daemon, stop_daemon

DEBUG_CODE_PORT = 49999


@pytest.fixture(scope="module")
def debug_env(daemon) -> Iterator[str]:
    """The SDK reads E2B_DEBUG / E2B_SANDBOX_URL when the sandbox object is built (sdk-expectations §1.1, §2.1)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2B_DEBUG", "true")
        mp.setenv("E2B_SANDBOX_URL", daemon.url)
        for var in ("E2B_API_KEY", "E2B_API_URL", "E2B_ACCESS_TOKEN", "E2B_DOMAIN"):
            mp.delenv(var, raising=False)
        yield daemon.url


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def code_daemon(tmp_path_factory: pytest.TempPathFactory, sandbox_user: str) -> Iterator[Daemon]:
    """A daemon of the module's own on the code-interpreter port the SDK's debug mode dials (49999)."""
    if not Path("/opt/envd-kernels/share/jupyter/kernels/python3/kernel.json").exists():
        pytest.fail("the python kernel is not installed: run `make kernels`")
    if not _port_free(DEBUG_CODE_PORT):
        pytest.fail(f"port {DEBUG_CODE_PORT} is in use (another envd or code interpreter?); the SDK's debug mode "
                    f"needs it, stop whatever listens there")
    d, _ = start_code_daemon(tmp_path_factory.mktemp("envd-code"), "-default-user", sandbox_user,
                             code_port=DEBUG_CODE_PORT)
    yield d
    stop_daemon(d)
    assert d.process.returncode == 0, "envd did not shut down cleanly"


@pytest.fixture(scope="module")
def sbx(code_daemon: Daemon) -> Iterator[Sandbox]:
    """The code-interpreter SDK in debug mode (E2B_SANDBOX_URL unset: it would redirect 49999's calls too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2B_DEBUG", "true")
        for var in ("E2B_SANDBOX_URL", "E2B_API_KEY", "E2B_API_URL", "E2B_ACCESS_TOKEN", "E2B_DOMAIN"):
            mp.delenv(var, raising=False)
        yield Sandbox.create()
