"""The boot smoke suite's VM: the image from `make rootfs`, booted once per session under QEMU (`make boot-test`).

Runs only when ENVD_VM_DIR names an image directory (`make boot-test` sets it); `make test` skips the
directory with that reason, since a boot needs the image and ~1 min of TCG. The SDKs reach the VM in
debug mode through the forwarded loopback ports (E2B_SANDBOX_URL = the port forwarding guest 49983).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "rootfs"))
import boot  # noqa: E402  (rootfs/boot.py: stdlib-only launcher shared with `make boot`)

VM_DIR = os.environ.get("ENVD_VM_DIR")
FIGURES: dict[str, str] = {}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.vm)
            item.add_marker(pytest.mark.slow)
            if not VM_DIR:
                item.add_marker(pytest.mark.skip(
                    reason="VM boot suite: set ENVD_VM_DIR to an image from `make rootfs` (`make boot-test` does)"))


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("VM figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def image_env(vm_dir: Path) -> dict[str, str]:
    """build.sh's image.env: flavour, kernel, content size."""
    pairs = (line.split("=", 1) for line in (vm_dir / "image.env").read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@pytest.fixture(scope="session")
def vm_dir() -> Path:
    path = Path(VM_DIR).resolve()
    if not (path / "rootfs.ext4").is_file():
        pytest.fail(f"no image in {path}: run `make rootfs` first (FLAVOUR={path.name})")
    return path


@pytest.fixture(scope="session")
def flavour(vm_dir: Path) -> str:
    return image_env(vm_dir)["flavour"]


@pytest.fixture(scope="session")
def vm(vm_dir: Path, flavour: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[boot.VM]:
    """One VM for the session, /init-ed with default user `user` and an env var, no token (debug-mode SDK)."""
    # The code-interpreter SDK's debug mode dials localhost:49999 (E2B_SANDBOX_URL would send run_code to
    # envd's port instead), so that flavour needs the fixed host port.
    code_port = 0
    if flavour == "code-interpreter":
        if not boot.port_free(boot.CODE_PORT):
            pytest.fail(f"host port {boot.CODE_PORT} is in use; the code-interpreter SDK's debug mode needs it "
                        f"for run_code against the VM: stop whatever listens there")
        code_port = boot.CODE_PORT
    machine = boot.VM(image_dir=vm_dir, code_host_port=code_port,
                      state_dir=tmp_path_factory.mktemp("vm"))
    try:
        seconds = machine.boot(timeout=180, retries=1)
        FIGURES["accelerator"] = machine.accel
        FIGURES["flavour"] = flavour
        FIGURES["image content"] = f"{image_env(vm_dir)['content_mb']} MB"
        FIGURES["boot to healthy (QEMU exec -> /health 204)"] = (
            f"{seconds:.2f} s, {machine.cpu_to_healthy:.1f} s QEMU CPU (attempt {machine.attempts}, "
            f"host load average {os.getloadavg()[0]:.1f})")
        print(f"\nVM booted with accelerator {machine.accel} in {seconds:.2f} s; envd at {machine.url}")
        machine.init(env_vars={"VM_SMOKE": "from-init"}, default_user="user")
        yield machine
    finally:
        machine.shutdown()


@pytest.fixture
def sdk_env(vm: boot.VM, monkeypatch: pytest.MonkeyPatch) -> str:
    """E2B_DEBUG + E2B_SANDBOX_URL at the VM's forwarded envd port (sdk-expectations §1.1, §2.1)."""
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_SANDBOX_URL", vm.url)
    for var in ("E2B_API_KEY", "E2B_API_URL", "E2B_ACCESS_TOKEN", "E2B_DOMAIN"):
        monkeypatch.delenv(var, raising=False)
    return vm.url


@pytest.fixture
def sbx(sdk_env: str):
    from e2b import Sandbox

    return Sandbox.create()
