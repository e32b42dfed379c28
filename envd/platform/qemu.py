"""One QEMU microVM, driven asynchronously: command line, QMP, save and restore of its state.

Recipe: ../shared/notes/vm-boot.md (launch) and ../shared/notes/vm-snapshots.md (save/restore). The command line
is generated from one template for the template's cold boot, every restore and every resume, because a restore
only works with the same machine (same -m, same devices); only the disk file, the RAM file's sharing, the
serial/QMP paths and -incoming differ. Guest RAM lives in a file: the template boots with it shared (its RAM ends
up in the file and the saved state is a few KB, `x-ignore-shared`), every sandbox maps it privately
(copy-on-write, the template file is never written).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ENVD_PORT = 49983
CODE_PORT = 49999


class VMError(RuntimeError):
    """A VM that did not start, load or save; the message names the step (and the console tail if any)."""


def host_tsc_khz() -> int | None:
    """Under TCG the guest TSC runs at the host rate; telling the kernel avoids a PIT calibration that can
    hang microvm boots (vm-boot.md gotcha 5)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.MULTILINE)
    return int(float(match.group(1)) * 1000) if match else None


def kvm_usable() -> bool:
    """KVM only with hardware virtualization flags and an openable /dev/kvm (vm-boot.md gotcha 1)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return bool(re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.MULTILINE))


@dataclass(frozen=True)
class Machine:
    """Everything a saved state depends on: identical for a template's boot and all its restores."""

    kernel: Path
    initrd: Path
    ram_file: Path
    memory_mib: int = 512
    cpus: int = 2
    accel: str = "tcg"
    tsc_khz: int | None = None

    def command(self, *, disk: Path, run_dir: Path, share_ram: bool, incoming: bool) -> list[str]:
        append = "console=ttyS0 root=/dev/vda rw quiet panic=1"
        if self.accel == "tcg" and self.tsc_khz:
            append += f" tsc_early_khz={self.tsc_khz} tsc=reliable"
        # Port 0: QEMU picks free host ports, read back over QMP (forwards()).
        fwd = f"hostfwd=tcp:127.0.0.1:0-:{ENVD_PORT},hostfwd=tcp:127.0.0.1:0-:{CODE_PORT}"
        return [
            "qemu-system-x86_64",
            "-M", "microvm,acpi=on,memory-backend=mem0", "-accel", self.accel,
            "-m", str(self.memory_mib), "-smp", str(self.cpus),
            *(["-cpu", "host"] if self.accel == "kvm" else []),
            "-object", f"memory-backend-file,id=mem0,size={self.memory_mib}M,mem-path={self.ram_file},"
                       f"share={'on' if share_ram else 'off'}",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", append,
            "-drive", f"id=root,file={disk},format=qcow2,if=none",
            "-device", "virtio-blk-device,drive=root",
            "-netdev", f"user,id=n0,{fwd}", "-device", "virtio-net-device,netdev=n0",
            # Host entropy for the guest's CRNG (ready at once at boot, as rootfs/boot.py does); restores still
            # get an immediate reseed through /init (guest.py), since this only trickles in.
            "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0",
            "-serial", f"file:{run_dir / 'serial.log'}",
            "-qmp", f"unix:{run_dir / 'qmp.sock'},server=on,wait=off",
            "-pidfile", str(run_dir / "qemu.pid"),
            *(["-incoming", "defer"] if incoming else []),
        ]


async def create_overlay(path: Path, backing: Path) -> None:
    """A qcow2 layer on `backing` (absolute path: backing paths are stored in the file, vm-snapshots.md rule 3)."""
    fmt = "raw" if backing.suffix == ".ext4" else "qcow2"
    proc = await asyncio.create_subprocess_exec(
        "qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing.resolve()), "-F", fmt, str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise VMError(f"qemu-img create {path}: {err.decode(errors='replace').strip()}")


class Qmp:
    """QMP over the VM's unix socket: one command at a time, events skipped."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: Path, process: asyncio.subprocess.Process, timeout: float = 10.0) -> Qmp:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
                break
            except OSError:
                if process.returncode is not None or time.monotonic() > deadline:
                    raise VMError(f"QMP socket {path} did not come up") from None
                await asyncio.sleep(0.005)
        qmp = cls(reader, writer)
        await qmp._read()  # greeting
        await qmp.execute("qmp_capabilities")
        return qmp

    async def _read(self) -> dict:
        while True:
            line = await self.reader.readline()
            if not line:
                raise VMError("QMP connection closed (QEMU exited)")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    async def execute(self, command: str, **arguments) -> object:
        async with self.lock:
            msg = {"execute": command, **({"arguments": arguments} if arguments else {})}
            try:
                self.writer.write(json.dumps(msg).encode() + b"\n")
                await self.writer.drain()
                reply = await self._read()
            except OSError as err:
                raise VMError(f"QMP {command}: {err} (QEMU exited)") from None
        if "error" in reply:
            raise VMError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    async def hmp(self, command_line: str) -> str:
        return str(await self.execute("human-monitor-command", **{"command-line": command_line}))

    def close(self) -> None:
        self.writer.close()


class VM:
    """A running (or stopped) QEMU process and what belongs to it in its run directory."""

    def __init__(self, machine: Machine, run_dir: Path, disk: Path) -> None:
        self.machine = machine
        self.run_dir = run_dir
        self.disk = disk
        self.process: asyncio.subprocess.Process | None = None
        self.qmp: Qmp | None = None
        # guest port -> host port on 127.0.0.1
        self.ports: dict[int, int] = {}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def console_tail(self, lines: int = 20) -> str:
        try:
            text = (self.run_dir / "serial.log").read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no console output)"

    def _qemu_stderr(self) -> str:
        try:
            return (self.run_dir / "qemu.log").read_text(errors="replace").strip()
        except OSError:
            return ""

    async def start(self, *, share_ram: bool, incoming: bool) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "qmp.sock").unlink(missing_ok=True)
        cmd = self.machine.command(disk=self.disk, run_dir=self.run_dir, share_ram=share_ram, incoming=incoming)
        with open(self.run_dir / "qemu.log", "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
                start_new_session=True)  # a Ctrl-C to the platform's terminal is the platform's to handle
        try:
            self.qmp = await Qmp.connect(self.run_dir / "qmp.sock", self.process)
            await self.read_forwards()
        except VMError as err:
            await self.kill()
            raise VMError(f"{err}; qemu: {self._qemu_stderr() or '(no output)'}") from None

    async def read_forwards(self) -> None:
        # "TCP[HOST_FORWARD]  <fd>  127.0.0.1 <host port>  10.0.2.15 <guest port> ..."
        text = await self.qmp.hmp("info usernet")
        for match in re.finditer(r"HOST_FORWARD\]\s+\S+\s+\S+\s+(\d+)\s+\S+\s+(\d+)", text):
            self.ports[int(match.group(2))] = int(match.group(1))
        if ENVD_PORT not in self.ports:
            raise VMError("QEMU reports no host forward for guest port 49983")

    async def forward(self, guest_port: int) -> int:
        """The host port reaching `guest_port`, adding a forward on first use (any port a guest process uses)."""
        if guest_port not in self.ports:
            await self.qmp.hmp(f"hostfwd_add n0 tcp:127.0.0.1:0-:{guest_port}")
            await self.read_forwards()
        return self.ports[guest_port]

    async def _ignore_shared(self) -> None:
        """x-ignore-shared on every save and load alike: it changes the stream format, so both sides must agree.
        It leaves out only RAM mapped shared (the template's boot); a sandbox's private RAM is always saved."""
        await self.qmp.execute("migrate-set-capabilities",
                               capabilities=[{"capability": "x-ignore-shared", "state": True}])

    async def load(self, state_file: Path, timeout: float = 60.0) -> None:
        """Feed a saved state into a VM started with `incoming=True`; returns when it is loaded (paused)."""
        try:
            await self._load(state_file, timeout)
        except VMError as err:
            await asyncio.sleep(0.1)  # let QEMU finish writing why it gave up
            raise VMError(f"loading {state_file.name}: {err}; qemu: {self._qemu_stderr() or '(no output)'}") from None

    async def _load(self, state_file: Path, timeout: float) -> None:
        await self._ignore_shared()
        await self.qmp.execute("migrate-incoming", uri=f"exec:cat {shlex.quote(str(state_file))}")
        deadline = time.monotonic() + timeout
        while True:
            status = (await self.qmp.execute("query-status"))["status"]
            if status == "paused":
                return
            if status not in ("inmigrate", "prelaunch"):
                raise VMError(f"state load ended in run state {status!r}")
            if time.monotonic() > deadline:
                raise VMError(f"state load not done within {timeout:.0f} s")
            await asyncio.sleep(0.005)

    async def save(self, state_file: Path, timeout: float = 120.0) -> None:
        """Stop the guest and write its state (vm-snapshots.md "Save"); the VM stays stopped, disk flushed."""
        await self.qmp.execute("stop")
        await self._ignore_shared()
        # Debian's default of 128 MiB/s makes a 170 MB save take 1.2 s instead of 0.15 s.
        await self.qmp.execute("migrate-set-parameters", **{"max-bandwidth": 100 << 30})
        await self.qmp.execute("migrate", uri=f"exec:cat > {shlex.quote(str(state_file))}")
        deadline = time.monotonic() + timeout
        while True:
            info = await self.qmp.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise VMError(f"saving the VM state failed: {info.get('error-desc', status)}")
            if time.monotonic() > deadline:
                raise VMError(f"saving the VM state not done within {timeout:.0f} s")
            await asyncio.sleep(0.01)

    async def cont(self) -> None:
        await self.qmp.execute("cont")

    async def stop(self) -> None:
        await self.qmp.execute("stop")

    async def quit(self, timeout: float = 5.0) -> None:
        """QMP quit (QEMU flushes and releases the disk), then make sure the process is gone."""
        if self.process is not None and self.process.returncode is None and self.qmp is not None:
            try:
                await self.qmp.execute("quit")
                await asyncio.wait_for(self.process.wait(), timeout)
            except (TimeoutError, VMError, OSError):
                pass
        await self.kill()

    async def kill(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.process is not None:
            if self.process.returncode is None:
                try:
                    self.process.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
            await self.process.wait()
        (self.run_dir / "qmp.sock").unlink(missing_ok=True)
        (self.run_dir / "qemu.pid").unlink(missing_ok=True)

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None


def stale_qemu_pid(run_dir: Path, owner: Path) -> int | None:
    """The pid in `run_dir`/qemu.pid if that process is still a QEMU whose files are under `owner` (crash
    leftovers; a pooled VM's directory is renamed when handed out, so the check is on the owning root)."""
    try:
        pid = int((run_dir / "qemu.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(owner).encode() in cmdline and cmdline.startswith(b"qemu-system") else None
