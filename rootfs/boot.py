"""Boot the envd image under QEMU microvm and bring envd up the way an orchestrator does (`make boot`).

Stdlib only, so it runs with any python3 (also imported by tests/vm). Recipe: rootfs/README.md and
../shared/notes/vm-boot.md. Steps: pick the accelerator (KVM only where the host CPU has vmx/svm and
/dev/kvm opens, else TCG), start QEMU with user-mode networking forwarding the guest's 49983/49999 to
loopback ports, wait for GET /health (bounded; one retry with a fresh QEMU), then POST /init with a
token, env vars, timestamp and default user. Every wait is bounded; a failed boot raises BootError
carrying the last serial-console lines, and the CLI exits 1 with them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The platform's QEMU helpers are stdlib-only: shared here without envd's dependencies installed.
sys.path.insert(0, str(ROOT))
from envd.platform.qemu import CODE_PORT, ENVD_PORT, host_tsc_khz, kvm_usable  # noqa: E402
DEFAULT_IMAGE_DIR = ROOT / "build" / "vm" / "base"


class BootError(RuntimeError):
    """A boot that did not reach a healthy envd; the message ends with the console tail."""


def pick_accel(wanted: str) -> str:
    if wanted == "auto":
        return "kvm" if kvm_usable() else "tcg"
    if wanted == "kvm" and not kvm_usable():
        raise BootError("accelerator kvm requested but this host has no usable KVM (no vmx/svm or /dev/kvm)")
    return wanted


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http(method: str, url: str, body: bytes | None = None, timeout: float = 5.0,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Qmp:
    """Just enough QMP: capabilities handshake, then one command at a time."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise BootError(f"QMP socket {path} did not come up within {timeout:.0f} s") from None
                time.sleep(0.05)
        self.file = self.sock.makefile("rwb")
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.file.readline()
            if not line:
                raise BootError("QMP connection closed (QEMU exited?)")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, command: str, **arguments) -> object:
        msg = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise BootError(f"QMP {command}: {reply['error']}")
        return reply.get("return")

    def hmp(self, command_line: str) -> str:
        return str(self.execute("human-monitor-command", **{"command-line": command_line}))

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


@dataclass
class VM:
    """One QEMU microvm running the image, its forwarded ports and console log."""

    image_dir: Path = DEFAULT_IMAGE_DIR
    accel: str = "auto"
    memory_mib: int = 1024
    cpus: int = 2
    # Host ports for the guest's 49983 / 49999; 0 = a free port QEMU picks (read back over QMP).
    envd_host_port: int = 0
    code_host_port: int = 0
    extra_append: str = ""
    state_dir: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False)
    envd_port: int = field(default=0, init=False)
    code_port: int = field(default=0, init=False)
    started_at: float = field(default=0.0, init=False)
    boot_to_healthy: float = field(default=0.0, init=False)
    cpu_to_healthy: float = field(default=0.0, init=False)
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.image_dir = Path(self.image_dir)
        self.accel = pick_accel(self.accel)
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="envd-vm-"))
            self._own_state_dir = True
        else:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._own_state_dir = False
        self.serial_log = self.state_dir / "serial.log"
        self.qmp_path = self.state_dir / "qmp.sock"
        self.qmp: Qmp | None = None
        for name in ("vmlinuz", "initrd.img", "rootfs.ext4"):
            if not (self.image_dir / name).is_file():
                raise BootError(f"{self.image_dir / name} is missing: build the image with `make rootfs`")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.envd_port}"

    @property
    def code_url(self) -> str:
        return f"http://127.0.0.1:{self.code_port}"

    def command(self) -> list[str]:
        append = "console=ttyS0 root=/dev/vda rw quiet panic=1"
        if self.accel == "tcg" and (khz := host_tsc_khz()):
            append += f" tsc_early_khz={khz} tsc=reliable"
        if self.extra_append:
            append += " " + self.extra_append
        fwd = (f"hostfwd=tcp:127.0.0.1:{self.envd_host_port}-:{ENVD_PORT},"
               f"hostfwd=tcp:127.0.0.1:{self.code_host_port}-:{CODE_PORT}")
        return [
            "qemu-system-x86_64",
            "-M", "microvm,acpi=on", "-accel", self.accel, "-m", str(self.memory_mib), "-smp", str(self.cpus),
            *(["-cpu", "host"] if self.accel == "kvm" else []),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.image_dir / "vmlinuz"), "-initrd", str(self.image_dir / "initrd.img"),
            "-append", append,
            # snapshot=on: guest writes go to a throwaway overlay; one image serves every boot.
            "-drive", f"id=root,file={self.image_dir / 'rootfs.ext4'},format=raw,if=none,snapshot=on",
            "-device", "virtio-blk-device,drive=root",
            "-netdev", f"user,id=n0,{fwd}", "-device", "virtio-net-device,netdev=n0",
            # Host entropy: the guest's CRNG is ready at once instead of after ~20 s of TCG jitter, so
            # nothing that reads getrandom() (Python, ssh keys, tokens) blocks during boot.
            "-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-device,rng=rng0",
            "-serial", f"file:{self.serial_log}",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
        ]

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(no console output)"

    def _fail(self, reason: str) -> BootError:
        return BootError(f"{reason}\n--- last console lines ({self.serial_log}) ---\n{self.console_tail()}")

    def _forwarded_ports(self) -> tuple[int, int]:
        # "TCP[HOST_FORWARD]  <fd>  127.0.0.1 <host port>  10.0.2.15 <guest port> ..."
        ports: dict[int, int] = {}
        for match in re.finditer(r"HOST_FORWARD\]\s+\S+\s+\S+\s+(\d+)\s+\S+\s+(\d+)", self.qmp.hmp("info usernet")):
            ports[int(match.group(2))] = int(match.group(1))
        if ENVD_PORT not in ports:
            raise self._fail("QEMU reports no host forward for guest port 49983")
        return ports[ENVD_PORT], ports.get(CODE_PORT, 0)

    def start(self) -> None:
        if shutil.which("qemu-system-x86_64") is None:
            raise BootError("qemu-system-x86_64 not found: run scripts/setup-vm-host.sh")
        self.serial_log.unlink(missing_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(self.state_dir / "qemu.log", "wb"))
        try:
            self.qmp = Qmp(self.qmp_path)
        except BootError as err:
            self.kill()
            qemu_log = (self.state_dir / "qemu.log").read_text(errors="replace").strip()
            raise self._fail(f"{err}; qemu: {qemu_log or '(no output)'}") from None
        self.envd_port, self.code_port = self._forwarded_ports()

    def qemu_cpu_seconds(self) -> float:
        """Host CPU time QEMU has used (all vCPU threads): the guest's work, less sensitive than wall time to
        what else runs on the host."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_healthy(self, timeout: float) -> float:
        """Poll GET /health every 0.1 s; seconds from QEMU exec to the first 204."""
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._fail(f"QEMU exited with status {self.process.returncode} before envd was healthy")
            try:
                status, _ = http("GET", f"{self.url}/health", timeout=2)
                if status == 204:
                    self.cpu_to_healthy = self.qemu_cpu_seconds()
                    return time.monotonic() - self.started_at
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise self._fail(f"envd not healthy within {timeout:.0f} s of QEMU start (accelerator {self.accel})")

    def boot(self, timeout: float = 120.0, retries: int = 1) -> float:
        """Start and wait for health; a failed attempt is killed and retried (vm-boot.md: rare TCG hangs)."""
        for attempt in range(retries + 1):
            self.attempts = attempt + 1
            try:
                self.start()
                self.boot_to_healthy = self.wait_healthy(timeout)
                return self.boot_to_healthy
            except BootError as err:
                self.kill()
                if attempt == retries:
                    raise
                print(f"boot attempt {attempt + 1} failed, retrying: {str(err).splitlines()[0]}", file=sys.stderr)
        raise AssertionError("unreachable")

    def init(self, *, access_token: str | None = None, env_vars: dict[str, str] | None = None,
             default_user: str = "user", timeout: float = 30.0) -> int:
        """POST /init as the orchestrator does on start: retried until an HTTP answer, then its status."""
        body = {"envVars": env_vars or {}, "defaultUser": default_user,
                "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        if access_token:
            body["accessToken"] = access_token
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, text = http("POST", f"{self.url}/init", json.dumps(body).encode(), timeout=10,
                                    headers={"Content-Type": "application/json"})
                if status != 204:
                    raise self._fail(f"/init answered {status}: {text.decode(errors='replace')}")
                return status
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise self._fail(f"/init got no answer within {timeout:.0f} s") from None
                time.sleep(0.05)

    def shutdown(self, timeout: float = 10.0) -> None:
        """QMP quit, then SIGKILL of our own QEMU. The disk is a throwaway snapshot overlay, so there is nothing
        for a guest shutdown to save (and the image runs no logind to act on an ACPI power button)."""
        if self.process is None:
            return
        if self.process.poll() is None and self.qmp is not None:
            try:
                self.qmp.execute("quit")
                self.process.wait(timeout)
            except (BootError, OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def kill(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def cleanup(self) -> None:
        self.kill()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="boot the envd image under QEMU microvm and /init it")
    parser.add_argument("--image-dir", type=Path, default=DEFAULT_IMAGE_DIR,
                        help="directory with vmlinuz, initrd.img, rootfs.ext4 (default build/vm/base)")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--memory", type=int, default=1024, help="MiB (default 1024)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120, help="seconds per boot attempt (default 120)")
    parser.add_argument("--retries", type=int, default=1, help="extra boot attempts (default 1)")
    parser.add_argument("--envd-port", type=int, default=0, help="host port for 49983 (default: a free one)")
    parser.add_argument("--code-port", type=int, default=0, help="host port for 49999 (default: a free one)")
    parser.add_argument("--token", default=None, help="access token to /init with (default: none)")
    parser.add_argument("--append", default="", help="extra kernel command line")
    parser.add_argument("--state-dir", type=Path, default=None, help="where serial.log and qmp.sock go")
    parser.add_argument("--keep", action="store_true", help="keep the VM running until Ctrl-C")
    args = parser.parse_args(argv)
    try:
        vm = VM(image_dir=args.image_dir, accel=args.accel, memory_mib=args.memory, cpus=args.cpus,
                envd_host_port=args.envd_port, code_host_port=args.code_port, extra_append=args.append,
                state_dir=args.state_dir)
    except BootError as err:
        print(f"boot: {err}", file=sys.stderr)
        return 1
    print(f"boot: image {vm.image_dir}, accelerator {vm.accel}, console {vm.serial_log}", flush=True)
    try:
        seconds = vm.boot(timeout=args.timeout, retries=args.retries)
        print(f"boot: envd healthy {seconds:.2f} s after QEMU start, {vm.cpu_to_healthy:.1f} s of QEMU CPU time "
              f"(attempt {vm.attempts}, load average {os.getloadavg()[0]:.1f}); "
              f"49983 -> {vm.url}, 49999 -> {vm.code_url}", flush=True)
        t0 = time.monotonic()
        vm.init(access_token=args.token, env_vars={"E2B_BOOTED_BY": "make-boot"})
        print(f"boot: /init 204 in {time.monotonic() - t0:.2f} s", flush=True)
        if args.keep:
            print(f"boot: E2B_DEBUG=true E2B_SANDBOX_URL={vm.url} (Ctrl-C stops the VM)", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
            try:
                vm.process.wait()
            except KeyboardInterrupt:
                pass
    except BootError as err:
        print(f"boot: FAILED: {err}", file=sys.stderr)
        vm.cleanup()
        return 1
    t0 = time.monotonic()
    vm.shutdown()
    print(f"boot: VM shut down in {time.monotonic() - t0:.1f} s", flush=True)
    vm.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
