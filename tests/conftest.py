"""Shared fixtures: a real envd daemon started as a subprocess, the way users run it."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def ensure_sandbox_user() -> None:
    """A local sandbox looks like an E2B one: account `user`, home /home/user, passwordless sudo."""
    try:
        pwd.getpwnam("user")
    except KeyError:
        subprocess.run(["bash", str(ROOT / "scripts" / "setup-user.sh")], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Daemon:
    url: str
    port: int
    process: subprocess.Popen
    run_dir: Path

    def rss_bytes(self) -> int:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss


def start_daemon(tmp: Path, *extra: str, port: int | None = None) -> Daemon:
    port = port or free_port()
    run_dir = tmp / "run"
    if "-code-port" not in extra:
        extra = (*extra, "-code-port", "0")  # the code port (49999) only where a test asks for it
    process = subprocess.Popen(
        [sys.executable, "-m", "envd", "-isnotfc", "-port", str(port), "-host", "127.0.0.1",
         "-run-dir", str(run_dir), *extra],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "envd.log", "ab"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"envd exited with {process.returncode}: {(tmp / 'envd.log').read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 204:
                return Daemon(url=url, port=port, process=process, run_dir=run_dir)
        except httpx.TransportError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError("envd did not become healthy")


def wait_code_health(daemon: Daemon, code_port: int, timeout: float = 60) -> None:
    """The code port answers 200 once the default python context exists (code-interpreter.md §4.4)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{code_port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    log = daemon.run_dir.parent / "envd.log"
    raise AssertionError(f"code port never became healthy: {log.read_text()[-2000:] if log.exists() else ''}")


def start_code_daemon(tmp: Path, *extra: str, code_port: int | None = None) -> tuple[Daemon, str]:
    """A daemon serving the code-interpreter API too, healthy; returns it and the code port's URL."""
    code_port = code_port or free_port()
    d = start_daemon(tmp, *extra, "-code-port", str(code_port))
    try:
        wait_code_health(d, code_port)
    except BaseException:
        stop_daemon(d)
        raise
    return d, f"http://127.0.0.1:{code_port}"


def stop_daemon(daemon: Daemon) -> None:
    daemon.process.terminate()
    try:
        daemon.process.wait(10)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        raise


@pytest.fixture(scope="session")
def sandbox_user() -> str:
    ensure_sandbox_user()
    return "user"


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory, sandbox_user: str) -> Iterator[Daemon]:
    """One daemon for the session, in local debug mode with default user `user` and no token."""
    d = start_daemon(tmp_path_factory.mktemp("envd"), "-default-user", sandbox_user)
    yield d
    stop_daemon(d)
    assert d.process.returncode == 0, "envd did not shut down cleanly on SIGTERM"


@pytest.fixture
def fresh_daemon(tmp_path: Path, sandbox_user: str) -> Iterator[Daemon]:
    """A daemon of its own, for tests that change global state (/init token, env vars)."""
    d = start_daemon(tmp_path, "-default-user", sandbox_user)
    yield d
    stop_daemon(d)


@pytest.fixture
def user_home(sandbox_user: str, tmp_path: Path) -> Iterator[Path]:
    """A scratch directory inside /home/user, removed afterwards."""
    home = Path(pwd.getpwnam(sandbox_user).pw_dir)
    scratch = home / f"envd-test-{os.getpid()}-{tmp_path.name}"
    scratch.mkdir(parents=True)
    pw = pwd.getpwnam(sandbox_user)
    os.chown(scratch, pw.pw_uid, pw.pw_gid)
    yield scratch
    subprocess.run(["rm", "-rf", str(scratch)], check=False)
