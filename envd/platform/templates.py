"""Templates: an image flavour booted once, warmed up and saved, so sandboxes start by restoring that state.

Layout of one template's snapshot directory (<state>/templates/<name>/), all of it read-only once saved:
  base.ext4, vmlinuz, initrd.img   sparse copies of the built image (build/vm/<flavour>/), so a rebuild of
                                   the image never changes what a saved state refers to
  disk.qcow2                       the overlay the template booted on, frozen at the save (vm-snapshots.md
                                   "Disk rule": every sandbox gets its own overlay on top of it)
  ram                              guest RAM at the save (mapped privately by every sandbox)
  vm.state                         device state (a few KB: RAM is left out with x-ignore-shared)
  meta.json                        what it was made from, and the cold boot's figures
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from . import guest
from .qemu import CODE_PORT, ENVD_PORT, VM, Machine, VMError, create_overlay

log = logging.getLogger("envd.platform")

FORMAT = 4  # bump when the snapshot layout or machine command line changes


@dataclass
class Template:
    name: str
    flavour: str
    image_dir: Path
    snap_dir: Path
    memory_mib: int
    cpus: int
    accel: str
    tsc_khz: int | None
    aliases: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    error: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def machine(self) -> Machine:
        return Machine(kernel=self.snap_dir / "vmlinuz", initrd=self.snap_dir / "initrd.img",
                       ram_file=self.snap_dir / "ram", memory_mib=self.memory_mib, cpus=self.cpus,
                       accel=self.accel, tsc_khz=self.tsc_khz)

    @property
    def disk(self) -> Path:
        return self.snap_dir / "disk.qcow2"

    @property
    def state_file(self) -> Path:
        return self.snap_dir / "vm.state"

    @property
    def envd_version(self) -> str:
        return self.meta.get("envd_version", "")

    @property
    def has_kernels(self) -> bool:
        return self.flavour == "code-interpreter"

    def built(self) -> str | None:
        """Why the image cannot be used (None when it can)."""
        missing = [n for n in ("rootfs.ext4", "vmlinuz", "initrd.img") if not (self.image_dir / n).is_file()]
        if missing:
            return (f"template '{self.name}' is not available: image {self.image_dir} has no {', '.join(missing)}"
                    f" (build it with `make rootfs FLAVOUR={self.flavour}`)")
        return None

    def fingerprint(self, qemu_version: str) -> dict:
        source = {}
        for name in ("rootfs.ext4", "vmlinuz", "initrd.img"):
            st = (self.image_dir / name).stat()
            source[name] = [st.st_size, st.st_mtime_ns]
        return {"format": FORMAT, "source": source, "memory_mib": self.memory_mib, "cpus": self.cpus,
                "accel": self.accel, "tsc_khz": self.tsc_khz, "qemu": qemu_version}

    def saved(self, fingerprint: dict) -> dict | None:
        try:
            meta = json.loads((self.snap_dir / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        files = ("base.ext4", "vmlinuz", "initrd.img", "disk.qcow2", "ram", "vm.state")
        if meta.get("fingerprint") != fingerprint or not all((self.snap_dir / f).is_file() for f in files):
            return None
        return meta

    async def prepare(self, http: httpx.AsyncClient, qemu_version: str, boot_timeout: float) -> None:
        """Reuse a matching saved state, else cold boot, warm up and save; sets `ready` (or `error`)."""
        try:
            if reason := self.built():
                self.error = reason
                return
            fingerprint = self.fingerprint(qemu_version)
            if meta := self.saved(fingerprint):
                self.meta = meta
                log.info("template %s: reusing saved state from %s", self.name, self.snap_dir)
                return
            for attempt in (1, 2):  # one retry: rare TCG boot hangs (vm-boot.md gotcha 5)
                try:
                    self.meta = await self._cold_boot_and_save(http, fingerprint, boot_timeout)
                    return
                except VMError as err:
                    log.warning("template %s: cold boot attempt %d failed: %s", self.name, attempt, err)
                    if attempt == 2:
                        self.error = f"template '{self.name}' could not be prepared: {err}"
        except Exception as err:
            log.exception("template %s: preparation failed", self.name)
            self.error = f"template '{self.name}' could not be prepared: {err}"
        finally:
            self.ready.set()

    async def _cold_boot_and_save(self, http: httpx.AsyncClient, fingerprint: dict, boot_timeout: float) -> dict:
        if self.snap_dir.exists():
            for path in self.snap_dir.rglob("*"):
                path.chmod(stat.S_IRWXU)
            shutil.rmtree(self.snap_dir)
        run_dir = self.snap_dir / "boot"
        run_dir.mkdir(parents=True)
        t0 = time.monotonic()
        for name, target in (("rootfs.ext4", "base.ext4"), ("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")):
            proc = await asyncio.create_subprocess_exec(
                "cp", "--sparse=always", str(self.image_dir / name), str(self.snap_dir / target))
            if await proc.wait() != 0:
                raise VMError(f"copying {self.image_dir / name} failed")
        copy_s = time.monotonic() - t0
        await create_overlay(self.disk, self.snap_dir / "base.ext4")
        vm = VM(self.machine, run_dir, self.disk)
        log.info("template %s: cold boot of %s (%s, %d MiB)", self.name, self.image_dir, self.accel, self.memory_mib)
        t0 = time.monotonic()
        await vm.start(share_ram=True, incoming=False)
        try:
            base = f"http://127.0.0.1:{vm.ports[ENVD_PORT]}"
            code_base = f"http://127.0.0.1:{vm.ports[CODE_PORT]}" if self.has_kernels else None
            boot_s = await guest.wait_healthy(http, base, boot_timeout, alive=lambda: not vm.exited)
            t1 = time.monotonic()
            # Default user `user` but no token: every sandbox's own /init sets its token (first-time setup).
            await guest.init(http, base, access_token=None, env_vars=None)
            await guest.warm_up(http, base, code_base)
            envd_version = await guest.envd_version(http, base)
            if not re.fullmatch(r"\d+\.\d+\.\d+", envd_version):
                raise VMError(f"`envd -version` in the image printed {envd_version!r}, not X.Y.Z")
            warm_s = time.monotonic() - t1
            t1 = time.monotonic()
            await vm.save(self.state_file)
            save_s = time.monotonic() - t1
        except VMError as err:
            raise VMError(f"{err}\n--- console ---\n{vm.console_tail()}") from None
        finally:
            await vm.quit()
        # Frozen from here on: the saved state is only valid with the disk as it was (vm-snapshots.md rule 2).
        for name in ("disk.qcow2", "base.ext4", "ram", "vm.state", "vmlinuz", "initrd.img"):
            (self.snap_dir / name).chmod(0o444)
        shutil.rmtree(run_dir, ignore_errors=True)
        meta = {"fingerprint": fingerprint, "envd_version": envd_version, "cold_boot_s": round(boot_s, 2), "warm_up_s": round(warm_s, 2),
                "save_s": round(save_s, 3), "image_copy_s": round(copy_s, 2),
                "saved_at": time.time(), "snapshot_bytes": snapshot_bytes(self.snap_dir)}
        (self.snap_dir / "meta.json").write_text(json.dumps(meta, indent=1))
        log.info("template %s: saved (boot %.1f s, warm-up %.1f s, save %.2f s)", self.name, boot_s, warm_s, save_s)
        return meta


def snapshot_bytes(snap_dir: Path) -> dict:
    """Allocated bytes on disk of each part of a saved template (sparse files count what they hold)."""
    return {name: os.stat(snap_dir / name).st_blocks * 512
            for name in ("vm.state", "ram", "disk.qcow2", "base.ext4") if (snap_dir / name).exists()}
