"""Exposing loopback-only TCP listeners on the VM's external address (spec/envd.md §8.3).

Every second the scanner reads /proc/net/tcp and /proc/net/tcp6 (of envd's network namespace) for sockets
in LISTEN on exactly 127.0.0.1 or ::1, finds their owners, and keeps one socat per listener:

    socat -d -d -d TCP4-LISTEN:<port>,bind=<address>,reuseaddr,fork TCP<4|6>:<127.0.0.1|[::1]>:<port>

started as root in its own process group, in the `socats` cgroup, stdio discarded; SIGKILLed (group) when the
listener goes away. Differences from upstream, both its own "fix" recommendations (Q4 and §8.3):
- a forward whose listener went away is forgotten, so the same pid listening on the same port again gets a
  new forward;
- one port gets one socat even when 127.0.0.1 and ::1 listeners of different processes share it.
The target is the loopback address itself rather than `localhost`, which images without a `::1 localhost`
line in /etc/hosts cannot resolve for IPv6.

Owners: /proc/<pid>/fd is scanned only for listening sockets not seen before (a cache by socket inode), so
the steady-state cost is reading the two small /proc/net files. Nothing is forwarded while the bind address
does not exist on this machine (checked each scan, one log line per change): a developer machine running envd
locally would otherwise start a failing socat for every loopback listener it has.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import socket
from dataclasses import dataclass

log = logging.getLogger("envd.port-forwarder")

SCAN_PERIOD_S = 1.0
DEFAULT_BIND_ADDRESS = "169.254.0.21"
_LISTEN = "0A"
_LOOPBACK = {"0100007F": 4, "00000000000000000000000001000000": 6}  # /proc/net hex, host byte order words


@dataclass(frozen=True)
class Listener:
    port: int
    family: int  # 4 or 6
    inode: int


def loopback_listeners(net_dir: str = "/proc/net") -> list[Listener]:
    """TCP sockets in LISTEN bound to exactly 127.0.0.1 or ::1 (wildcard and other 127.x listeners are not)."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(net_dir, name)) as table:
                next(table, None)  # header
                for line in table:
                    if line.split(None, 4)[3:4] != [_LISTEN]:
                        continue  # most lines: connections (a short split is enough to tell)
                    fields = line.split()
                    address, _, port = fields[1].partition(":")
                    family = _LOOPBACK.get(address)
                    if family is not None:
                        found.append(Listener(port=int(port, 16), family=family, inode=int(fields[9])))
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
    return found


def socket_owners(inodes: set[int], proc: str = "/proc") -> dict[int, int]:
    """inode -> pid of a process holding that socket (the lowest pid when several share it)."""
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    owners: dict[int, int] = {}
    pids = sorted(int(entry) for entry in os.listdir(proc) if entry.isdigit())
    for pid in pids:
        fd_dir = f"{proc}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or a kernel thread
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in owners:
                owners[inode] = pid
        if len(owners) == len(wanted):
            break
    return owners


def address_exists(address: str) -> bool:
    """Whether `address` is configured on an interface here (binding port 0 to it works)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as err:
            if err.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True


def socat_argv(socat: str, address: str, listener: Listener) -> list[str]:
    target = "TCP4:127.0.0.1" if listener.family == 4 else "TCP6:[::1]"
    return [socat, "-d", "-d", "-d", f"TCP4-LISTEN:{listener.port},bind={address},reuseaddr,fork",
            f"{target}:{listener.port}"]


def in_cgroup(procs_path: str | None, argv: list[str]) -> list[str]:
    """Run `argv` placed in the cgroup of `procs_path` before exec (root may move itself); unplaced if refused."""
    if procs_path is None:
        return argv
    return ["/bin/sh", "-c", '{ echo $$ > "$0"; } 2>/dev/null; exec "$@"', procs_path, *argv]


@dataclass
class Forward:
    key: str  # "<owner pid>-<port>", owner pid 0 when unknown
    listener: Listener
    process: asyncio.subprocess.Process
    waiter: asyncio.Task | None = None


class PortForwarder:
    """The scanner + forwarder loop; `scan_once` is one period's work (the tests call it directly)."""

    def __init__(self, address: str = DEFAULT_BIND_ADDRESS, socat: str = "socat", procs_path: str | None = None,
                 period_s: float = SCAN_PERIOD_S, net_dir: str = "/proc/net") -> None:
        self.address = address
        self.socat = socat
        self.procs_path = procs_path
        self.period_s = period_s
        self.net_dir = net_dir
        self.forwards: dict[str, Forward] = {}
        self._owners: dict[int, int] = {}  # socket inode -> owner pid, for listeners still present
        self._address_up: bool | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.scan_once()
            except Exception:
                log.exception("port scan failed")
            await asyncio.sleep(self.period_s)

    def _wanted(self) -> dict[str, Listener]:
        """Blocking part of a scan (files under /proc): key -> listener, one per port."""
        listeners = loopback_listeners(self.net_dir)
        present = {listener.inode for listener in listeners}
        self._owners = {inode: pid for inode, pid in self._owners.items() if inode in present}
        unknown = present - self._owners.keys()
        if unknown:
            self._owners.update(socket_owners(unknown))
        wanted: dict[str, Listener] = {}
        ports_taken = {f.listener.port for f in self.forwards.values()}
        for listener in sorted(listeners, key=lambda item: (item.family, item.port)):
            key = f"{self._owners.get(listener.inode, 0)}-{listener.port}"
            if key in self.forwards:
                wanted[key] = listener
                continue
            if listener.port in ports_taken:
                continue  # one socat per port: a second one could not bind anyway
            ports_taken.add(listener.port)
            wanted[key] = listener
        return wanted

    async def scan_once(self) -> None:
        up = await asyncio.to_thread(address_exists, self.address)
        if up != self._address_up:
            self._address_up = up
            if up:
                log.info("forwarding loopback listeners to %s", self.address)
            else:
                log.info("%s is not configured here: loopback listeners are not forwarded", self.address)
        wanted = await asyncio.to_thread(self._wanted) if up else {}
        for key in [key for key in self.forwards if key not in wanted]:
            await self._stop(self.forwards.pop(key))
        for key, listener in wanted.items():
            if key not in self.forwards:
                await self._start(key, listener)

    async def _start(self, key: str, listener: Listener) -> None:
        argv = in_cgroup(self.procs_path, socat_argv(self.socat, self.address, listener))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, process_group=0)
        except OSError as err:
            log.warning("cannot start socat for port %d: %s", listener.port, err)
            return
        forward = Forward(key=key, listener=listener, process=process)
        forward.waiter = asyncio.ensure_future(self._watch(forward))
        self.forwards[key] = forward
        log.info("forwarding port", extra={"fields": {"key": key, "port": listener.port, "family": listener.family,
                                                      "socat_pid": process.pid}})

    async def _watch(self, forward: Forward) -> None:
        code = await forward.process.wait()
        if self.forwards.get(forward.key) is forward:
            # Died on its own (bind failed, killed by someone): kept, as upstream, until the listener goes away.
            log.warning("socat for port %d exited with status %s", forward.listener.port, code)

    async def _stop(self, forward: Forward) -> None:
        try:
            os.killpg(forward.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await forward.process.wait()
        log.info("stopped forwarding port", extra={"fields": {"key": forward.key, "port": forward.listener.port}})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for key in list(self.forwards):
            await self._stop(self.forwards.pop(key))


class NoPortForwarder:
    """socat is not installed: nothing is forwarded (logged once at start-up)."""

    forwards: dict = {}

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def create_port_forwarder(address: str, procs_path: str | None) -> PortForwarder | NoPortForwarder:
    socat = shutil.which("socat")
    if socat is None:
        log.warning("socat not found: loopback listeners will not be forwarded (apt-get install socat)")
        return NoPortForwarder()
    return PortForwarder(address=address, socat=socat, procs_path=procs_path)
