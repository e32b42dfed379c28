"""Bad boots fail loudly (issue 7): `make boot`'s launcher exits non-zero with the last console lines, within
its bounded wait, for an image that cannot boot and for a VM whose envd never becomes healthy."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

BOOT = ROOT / "rootfs" / "boot.py"


def boot_cli(image_dir: Path, *args: str, limit: float) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(BOOT), "--image-dir", str(image_dir), *args],
                            capture_output=True, text=True, timeout=limit)
    return result, time.monotonic() - started


def test_broken_image_exits_nonzero_with_console_tail(vm_dir, tmp_path):
    """A root device without a filesystem: the initramfs panics (panic=1 + -no-reboot ends QEMU) -> exit 1."""
    broken = tmp_path / "image"
    broken.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (broken / name).symlink_to(vm_dir / name)
    with open(broken / "rootfs.ext4", "wb") as f:
        f.truncate(64 * 1024 * 1024)  # zeros: no ext4 superblock
    result, seconds = boot_cli(broken, "--timeout", "150", "--retries", "0", limit=240)
    print(result.stdout, result.stderr[-2000:], f"({seconds:.0f} s)")
    assert result.returncode == 1
    assert "FAILED" in result.stderr and "last console lines" in result.stderr
    # The console tail names the failure (initramfs-tools' messages about the root device).
    assert "/dev/vda" in result.stderr, result.stderr[-2000:]


def test_envd_never_healthy_exits_nonzero_within_timeout(vm_dir):
    """The image boots but envd never starts (masked from the kernel command line): bounded wait, then exit 1."""
    result, seconds = boot_cli(vm_dir, "--timeout", "45", "--retries", "0", "--append", "systemd.mask=envd.service",
                               limit=150)
    print(result.stdout, result.stderr[-2000:], f"({seconds:.0f} s)")
    assert result.returncode == 1
    assert "envd not healthy within 45 s" in result.stderr
    assert "last console lines" in result.stderr
    assert seconds < 120
