"""Platform lifecycle: a crash leaves VMs that the next start reclaims; create at the limit fails cleanly."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from e2b import Sandbox
from e2b.exceptions import RateLimitException

from tests.platform.conftest import (
    running_platform,
    sdk_env,
    start_platform,
    stop_platform,
)


def test_crash_leftovers_are_reclaimed_at_next_start():
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("E2B_")}
    crashed = start_platform("base", "--pool", "0")
    try:
        os.environ.update(sdk_env(crashed))
        sandbox = Sandbox.create("base", timeout=300)
        run_dir = crashed.state / "sandboxes" / sandbox.sandbox_id
        qemu = int((run_dir / "qemu.pid").read_text())
        crashed.process.send_signal(signal.SIGKILL)  # no cleanup runs
        crashed.process.wait()
        assert psutil.pid_exists(qemu) and run_dir.is_dir(), "the crash should have left the VM behind"
    finally:
        for key in sdk_env(crashed):
            os.environ.pop(key, None)
        os.environ.update(saved)
        stop_platform(crashed)
    with running_platform("base", "--pool", "0") as plat:
        assert not psutil.pid_exists(qemu) or psutil.Process(qemu).status() == psutil.STATUS_ZOMBIE
        assert not run_dir.exists()
        assert "reclaimed 1 QEMU" in plat.log.read_text()
        assert Sandbox.list().next_items() == []


def test_create_at_the_limit_fails_cleanly():
    with running_platform("base", "--pool", "0", "--max-sandboxes", "1") as plat:
        first = Sandbox.create("base", timeout=120)
        before = sorted(p.name for p in (plat.state / "sandboxes").iterdir())
        qemus = sorted(plat.qemu_pids())
        with pytest.raises(RateLimitException, match="limit of 1 running sandboxes reached"):
            Sandbox.create("base", timeout=120)
        # Nothing half-made stays behind, and the running sandbox is untouched.
        assert sorted(p.name for p in (plat.state / "sandboxes").iterdir()) == before
        assert sorted(plat.qemu_pids()) == qemus
        assert first.commands.run("echo still-fine").stdout == "still-fine\n"
        first.kill()
        second = Sandbox.create("base", timeout=120)  # room again
        second.kill()


def test_a_template_whose_image_is_not_built_says_so(tmp_path):
    from e2b.exceptions import SandboxException

    from tests.platform.conftest import IMAGES

    images = tmp_path / "vm"
    images.mkdir()
    (images / "base").symlink_to(os.path.join(IMAGES, "base"))  # base only: no code-interpreter flavour
    with running_platform("base,code-interpreter", "--pool", "0", "--images", str(images)) as plat:
        assert plat.health()["templates"] == {"base": "ready", "code-interpreter": "error"}
        with pytest.raises(SandboxException, match=r"404: template 'code-interpreter' is not available: image "
                           r".* has no rootfs.ext4, vmlinuz, initrd.img \(build it with `make rootfs "
                           r"FLAVOUR=code-interpreter`\)"):
            Sandbox.create("code-interpreter-v1")
        Sandbox.create("base", timeout=60).kill()  # the other template still serves
