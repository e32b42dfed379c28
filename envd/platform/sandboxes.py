"""Sandboxes: create from a template's saved state, pause, resume, kill, expire; a warm pool; crash reclaim.

Protocol-agnostic core of the control plane (api.py is its REST adapter). Every sandbox has a directory
<state>/sandboxes/<id>/ holding its disk overlay (backed by the template's frozen one), its QEMU's run files
and, while paused, its saved state. Killing a sandbox removes the directory; the next start of the platform
removes whatever a crash left there (QEMU processes included).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import signal
import string
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from . import guest
from .qemu import CODE_PORT, ENVD_PORT, VM, VMError, create_overlay, stale_qemu_pid
from .templates import Template

log = logging.getLogger("envd.platform")

ID_ALPHABET = string.ascii_lowercase + string.digits


class PlatformError(Exception):
    """Answered by the API as {"code": status, "message": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Sandbox:
    id: str
    template: Template
    dir: Path
    access_token: str | None
    env_vars: dict[str, str]
    metadata: dict[str, str]
    timeout_s: int
    auto_pause: bool
    started_at: float = field(default_factory=time.time)
    end_at: float = 0.0
    state: str = "running"  # running | paused
    vm: VM | None = None
    samples: list[dict] = field(default_factory=list)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def envd_url(self) -> str:
        return f"http://127.0.0.1:{self.vm.ports[ENVD_PORT]}"

    @property
    def pause_file(self) -> Path:
        return self.dir / "paused.state"

    @property
    def init_env(self) -> dict[str, str]:
        """The create call's env vars, over what upstream envd learns from its metadata service (envd.md §8.1)."""
        return {"E2B_SANDBOX_ID": self.id, "E2B_TEMPLATE_ID": self.template.name, **self.env_vars}


@dataclass
class Parked:
    """A warm-pool VM: restored, warmed up, stopped; handing it out is `cont` + /init (vm-snapshots.md)."""

    vm: VM
    dir: Path


class Manager:
    def __init__(self, state_dir: Path, templates: dict[str, Template], *, max_sandboxes: int = 16,
                 pool_size: int = 1, memory_reserve_mib: int = 1024, max_timeout_s: int = 86400,
                 metrics_interval_s: float = 5.0) -> None:
        self.state_dir = state_dir
        self.sandbox_root = state_dir / "sandboxes"
        self.templates = templates
        self.max_sandboxes = max_sandboxes
        self.pool_size = pool_size
        self.memory_reserve_mib = memory_reserve_mib
        self.max_timeout_s = max_timeout_s
        self.metrics_interval_s = metrics_interval_s
        self.refill_delay_s = 1.0
        self.sandboxes: dict[str, Sandbox] = {}
        self.pools: dict[str, list[Parked]] = {name: [] for name in templates}
        self.refilling: dict[str, asyncio.Task] = {}
        self.http = guest.client()
        self.tasks: set[asyncio.Task] = set()
        self.starting = 0  # creates in flight, counted against the limit
        # Every QEMU this manager started, whatever it is doing (creating, pooled, running): stop kills them all.
        self.vms: weakref.WeakSet[VM] = weakref.WeakSet()

    # --- start-up and shutdown ---

    def reclaim(self) -> int:
        """Remove what a previous run left: QEMU processes of sandbox/pool/boot directories, and the dirs."""
        killed = 0
        for run_dir in [*self.sandbox_root.glob("*"), *self.state_dir.glob("templates/*/boot")]:
            if pid := stale_qemu_pid(run_dir, self.state_dir):
                try:
                    psutil.Process(pid).send_signal(signal.SIGKILL)
                    psutil.Process(pid).wait(5)
                    killed += 1
                except psutil.Error:
                    pass
            shutil.rmtree(run_dir, ignore_errors=True)
        self.sandbox_root.mkdir(parents=True, exist_ok=True)
        return killed

    def start(self) -> None:
        self.spawn(self._reaper())
        if self.metrics_interval_s > 0:
            self.spawn(self._sampler())
        for template in self.templates.values():
            self.spawn(self._after_ready(template))

    async def _after_ready(self, template: Template) -> None:
        await template.ready.wait()
        if not template.error:
            self._refill(template)

    async def close(self) -> None:
        for task in [*self.tasks, *self.refilling.values()]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.refilling.values(), return_exceptions=True)
        for pool in self.pools.values():
            while pool:
                parked = pool.pop()
                await parked.vm.kill()
                shutil.rmtree(parked.dir, ignore_errors=True)
        for sandbox in list(self.sandboxes.values()):
            await self._destroy(sandbox)
        for vm in list(self.vms):
            await vm.kill()
        for leftover in self.sandbox_root.glob("*"):  # half-made pool VMs of cancelled refills
            shutil.rmtree(leftover, ignore_errors=True)
        await self.http.aclose()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # --- lookups ---

    def template(self, name: str) -> Template:
        for template in self.templates.values():
            if name == template.name or name in template.aliases:
                return template
        known = ", ".join(sorted(self.templates))
        raise PlatformError(404, f"template '{name}' not found (this platform has: {known})")

    def get(self, sandbox_id: str) -> Sandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None:
            raise PlatformError(404, f"sandbox '{sandbox_id}' not found")
        return sandbox

    def running(self, sandbox_id: str) -> Sandbox | None:
        sandbox = self.sandboxes.get(sandbox_id)
        return sandbox if sandbox is not None and sandbox.state == "running" and sandbox.vm else None

    # --- create ---

    def _new_id(self) -> str:
        while True:
            sandbox_id = "i" + "".join(secrets.choice(ID_ALPHABET) for _ in range(19))
            if not (self.sandbox_root / sandbox_id).exists():
                return sandbox_id

    def _admit(self, template: Template) -> None:
        live = sum(1 for s in self.sandboxes.values() if s.state == "running") + self.starting
        if live >= self.max_sandboxes:
            raise PlatformError(429, f"limit of {self.max_sandboxes} running sandboxes reached "
                                     f"(envd platform --max-sandboxes); kill or pause one first")
        available_mib = psutil.virtual_memory().available // (1 << 20)
        if available_mib < template.memory_mib + self.memory_reserve_mib:
            raise PlatformError(429, f"not enough host memory for another sandbox: {available_mib} MiB available, "
                                     f"{template.memory_mib} MiB guest + {self.memory_reserve_mib} MiB reserve needed")

    def check_timeout(self, timeout: object) -> int:
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise PlatformError(400, "timeout must be a non-negative integer (seconds)")
        if timeout > self.max_timeout_s:
            raise PlatformError(400, f"timeout {timeout} s exceeds the maximum of {self.max_timeout_s} s")
        return timeout

    async def create(self, template_name: str, *, timeout_s: int, env_vars: dict[str, str],
                     metadata: dict[str, str], secure: bool = True, auto_pause: bool = False) -> Sandbox:
        template = self.template(template_name)
        await template.ready.wait()
        if template.error:
            raise PlatformError(404 if template.built() else 500, template.error)
        self._admit(template)
        self.starting += 1
        pool = self.pools[template.name]
        # A pooled VM's directory is already named for the id it will carry (QEMU holds its paths).
        parked = pool.pop() if pool else None
        if parked and parked.vm.exited:  # died while parked: drop it, restore instead
            log.warning("warm pool %s: parked QEMU had exited (%s)", template.name, parked.vm.process.returncode)
            await parked.vm.kill()
            shutil.rmtree(parked.dir, ignore_errors=True)
            parked = None
        sandbox_id = parked.dir.name if parked else self._new_id()
        sandbox = Sandbox(id=sandbox_id, template=template, dir=self.sandbox_root / sandbox_id,
                          access_token=secrets.token_urlsafe(32) if secure else None, env_vars=env_vars,
                          metadata=metadata, timeout_s=timeout_s, auto_pause=auto_pause)
        try:
            if parked:
                vm = parked.vm
                self._refill(template)
            else:
                vm = await self._restore(template, sandbox.dir)
            sandbox.vm = vm
            try:
                await vm.cont()
                await guest.init(self.http, sandbox.envd_url, access_token=sandbox.access_token,
                                 env_vars=sandbox.init_env)
            except VMError as err:
                raise VMError(f"{err}\n--- console ---\n{vm.console_tail()}") from None
        except (VMError, OSError) as err:
            log.error("create %s failed: %s", sandbox_id, err)
            if sandbox.vm:
                await sandbox.vm.kill()
            shutil.rmtree(sandbox.dir, ignore_errors=True)
            raise PlatformError(500, f"sandbox could not be started: {str(err).splitlines()[0]}") from None
        finally:
            self.starting -= 1
        sandbox.started_at = time.time()
        sandbox.end_at = sandbox.started_at + timeout_s
        self.sandboxes[sandbox_id] = sandbox
        log.info("sandbox %s created from %s", sandbox_id, template.name)
        return sandbox

    async def _restore(self, template: Template, run_dir: Path) -> VM:
        """A new VM from the template's saved state on a fresh overlay, loaded and still stopped."""
        run_dir.mkdir(parents=True)
        disk = run_dir / "disk.qcow2"
        await create_overlay(disk, template.disk)
        vm = VM(template.machine, run_dir, disk)
        self.vms.add(vm)
        await vm.start(share_ram=False, incoming=True)
        try:
            await vm.load(template.state_file)
        except VMError:
            await vm.kill()
            raise
        return vm

    # --- warm pool ---

    def _refill(self, template: Template) -> None:
        if self.pool_size <= 0 or template.name in self.refilling:
            return
        task = asyncio.create_task(self._fill(template))
        self.refilling[template.name] = task
        task.add_done_callback(lambda _: self.refilling.pop(template.name, None))

    async def _fill(self, template: Template) -> None:
        pool = self.pools[template.name]
        # After a hand-out, let the new sandbox's first requests run before a restore competes for the CPU.
        await asyncio.sleep(self.refill_delay_s)
        while len(pool) < self.pool_size:
            run_dir = self.sandbox_root / self._new_id()
            vm = None
            try:
                vm = await self._restore(template, run_dir)
                await vm.cont()
                base = f"http://127.0.0.1:{vm.ports[ENVD_PORT]}"
                code = f"http://127.0.0.1:{vm.ports[CODE_PORT]}" if template.has_kernels else None
                # Warm TCG's translation of envd's request paths in this QEMU, then freeze it.
                await guest.warm_up(self.http, base, code, timeout=60)
                await vm.stop()
            except (VMError, OSError, httpx.HTTPError, asyncio.CancelledError) as err:
                if not isinstance(err, asyncio.CancelledError):
                    log.warning("warm pool %s: %s", template.name, err)
                if vm:
                    await vm.kill()
                shutil.rmtree(run_dir, ignore_errors=True)
                if isinstance(err, asyncio.CancelledError):
                    raise
                return
            pool.append(Parked(vm, run_dir))

    # --- lifecycle ---

    async def kill(self, sandbox_id: str) -> None:
        sandbox = self.get(sandbox_id)
        async with sandbox.busy:
            await self._destroy(sandbox)

    async def _destroy(self, sandbox: Sandbox) -> None:
        self.sandboxes.pop(sandbox.id, None)
        if sandbox.vm:
            await sandbox.vm.kill()
            sandbox.vm = None
        shutil.rmtree(sandbox.dir, ignore_errors=True)
        log.info("sandbox %s removed", sandbox.id)

    def set_timeout(self, sandbox_id: str, timeout_s: int) -> None:
        sandbox = self.get(sandbox_id)
        sandbox.timeout_s = timeout_s
        sandbox.end_at = time.time() + timeout_s

    async def pause(self, sandbox_id: str) -> None:
        sandbox = self.get(sandbox_id)
        async with sandbox.busy:
            if sandbox.state == "paused":
                raise PlatformError(409, f"sandbox '{sandbox_id}' is already paused")
            await self._pause(sandbox)

    async def _pause(self, sandbox: Sandbox) -> None:
        """Save the running VM's state next to its overlay, then quit QEMU (vm-snapshots.md "Pause/resume")."""
        vm = sandbox.vm
        try:
            await vm.save(sandbox.pause_file)
        except VMError as err:
            sandbox.pause_file.unlink(missing_ok=True)
            try:
                await vm.cont()
            except VMError:
                pass
            raise PlatformError(500, f"pausing sandbox '{sandbox.id}' failed: {err}") from None
        await vm.quit()
        sandbox.vm = None
        sandbox.state = "paused"
        log.info("sandbox %s paused", sandbox.id)

    async def connect(self, sandbox_id: str, timeout_s: int | None) -> tuple[Sandbox, bool]:
        """Running: extend its timeout. Paused: restore it on its own overlay. Returns (sandbox, resumed)."""
        sandbox = self.get(sandbox_id)
        async with sandbox.busy:
            if sandbox.state == "running":
                if timeout_s is not None:
                    sandbox.end_at = max(sandbox.end_at, time.time() + timeout_s)
                return sandbox, False
            self._admit(sandbox.template)
            vm = VM(sandbox.template.machine, sandbox.dir, sandbox.dir / "disk.qcow2")
            self.vms.add(vm)
            try:
                await vm.start(share_ram=False, incoming=True)
                await vm.load(sandbox.pause_file)
                await vm.cont()
                sandbox.vm = vm
                # Same token (envd accepts it again), the host's clock (guest time stood still), new randomness.
                await guest.init(self.http, sandbox.envd_url, access_token=sandbox.access_token,
                                 env_vars=sandbox.init_env)
            except VMError as err:
                await vm.kill()
                sandbox.vm = None
                raise PlatformError(500, f"resuming sandbox '{sandbox_id}' failed: {err}") from None
            sandbox.pause_file.unlink(missing_ok=True)
            sandbox.state = "running"
            if timeout_s is not None:
                sandbox.timeout_s = timeout_s
            sandbox.end_at = time.time() + sandbox.timeout_s
            log.info("sandbox %s resumed", sandbox.id)
            return sandbox, True

    async def _reaper(self) -> None:
        """Expired sandboxes are killed (or paused with autoPause); a QEMU that died takes its sandbox along."""
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            for sandbox in list(self.sandboxes.values()):
                if sandbox.state != "running" or sandbox.busy.locked():
                    continue
                if sandbox.vm and sandbox.vm.exited:
                    log.warning("sandbox %s: QEMU exited (%s)", sandbox.id, sandbox.vm.process.returncode)
                    await self._destroy(sandbox)
                elif now >= sandbox.end_at:
                    async with sandbox.busy:
                        if sandbox.auto_pause:
                            try:
                                await self._pause(sandbox)
                                continue
                            except PlatformError as err:
                                log.warning("auto-pause of %s failed, killing it: %s", sandbox.id, err)
                        log.info("sandbox %s expired", sandbox.id)
                        await self._destroy(sandbox)

    # --- metrics ---

    async def sample(self, sandbox: Sandbox) -> None:
        try:
            raw = await guest.metrics(self.http, sandbox.envd_url, sandbox.access_token)
        except (VMError, httpx.HTTPError, ValueError) as err:
            log.debug("metrics of %s: %s", sandbox.id, err)
            return
        sandbox.samples.append(raw)
        del sandbox.samples[:-720]  # an hour at the default interval

    async def _sampler(self) -> None:
        while True:
            await asyncio.sleep(self.metrics_interval_s)
            running = [s for s in self.sandboxes.values() if s.state == "running" and s.vm]
            await asyncio.gather(*(self.sample(s) for s in running))
