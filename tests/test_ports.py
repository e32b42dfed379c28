"""Port forwarding of loopback-only listeners (spec/envd.md §8.3).

The end-to-end tests build a network namespace with a veth pair (the namespace plays the VM, its veth address
the VM's external address 169.254.0.21), run the daemon inside it (nsenter --net), and reach servers
bound to 127.0.0.1 / ::1 inside from outside, through the socat the daemon starts (in the `socats` group of a
private cgroup2 root). Unit tests read real sockets of this process from /proc.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from envd.host.ports import address_exists, in_cgroup, loopback_listeners, socat_argv, socket_owners, Listener
from tests.conftest import free_port
from tests.unit.test_cgroups import cgroup2_mount, cgroup_parent  # noqa: F401 (fixtures)

_names = itertools.count()

# A listener that answers "hello from <pid>" and can be closed and reopened (same pid, same port) on command.
LISTENER = r"""
import os, socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
server = None
def serve(sock):
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.sendall(b"hello from %d\n" % os.getpid())
        conn.close()
def open_listener():
    global server
    server = socket.socket(family)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen()
    threading.Thread(target=serve, args=(server,), daemon=True).start()
open_listener()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        print("closed", flush=True)
    elif line.strip() == "open":
        open_listener()
        print("ready", flush=True)
"""


# -- unit: what the scanner sees --------------------------------------------------------------------------------


def listen(host: str, family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def test_only_listeners_on_exactly_127_0_0_1_or_ipv6_loopback_are_selected() -> None:
    v4 = listen("127.0.0.1")
    v6 = listen("::1", socket.AF_INET6)
    wildcard = listen("0.0.0.0")
    other_loopback = listen("127.0.0.2")
    connected_client = socket.create_connection(("127.0.0.1", v4.getsockname()[1]))
    try:
        mine = {v4.getsockname()[1], v6.getsockname()[1], wildcard.getsockname()[1],
                other_loopback.getsockname()[1], connected_client.getsockname()[1]}
        found = {l.port: l for l in loopback_listeners() if l.port in mine}
        assert set(found) == {v4.getsockname()[1], v6.getsockname()[1]}
        assert found[v4.getsockname()[1]].family == 4 and found[v6.getsockname()[1]].family == 6
        inodes = {l.inode for l in found.values()}
        assert inodes == {os.fstat(v4.fileno()).st_ino, os.fstat(v6.fileno()).st_ino}
        assert socket_owners(inodes) == {inode: os.getpid() for inode in inodes}
    finally:
        for sock in (v4, v6, wildcard, other_loopback, connected_client):
            sock.close()


def test_socat_command_and_cgroup_placement() -> None:
    assert socat_argv("/usr/bin/socat", "169.254.0.21", Listener(port=8080, family=4, inode=1)) == [
        "/usr/bin/socat", "-d", "-d", "-d", "TCP4-LISTEN:8080,bind=169.254.0.21,reuseaddr,fork", "TCP4:127.0.0.1:8080"]
    assert socat_argv("socat", "169.254.0.21", Listener(port=3000, family=6, inode=1))[-1] == "TCP6:[::1]:3000"
    assert in_cgroup(None, ["socat"]) == ["socat"]
    placed = in_cgroup("/cg/socats/cgroup.procs", ["socat", "x"])
    assert placed[:2] == ["/bin/sh", "-c"] and placed[3:] == ["/cg/socats/cgroup.procs", "socat", "x"]


def test_the_placement_wrapper_runs_the_command_even_where_the_group_refuses_it(tmp_path: Path) -> None:
    procs = tmp_path / "cgroup.procs"
    out = subprocess.run(in_cgroup(str(procs), ["sh", "-c", "echo $$"]), capture_output=True, text=True, check=True)
    assert procs.read_text().strip() == out.stdout.strip()  # the pid written is the command's own (exec'd)
    out = subprocess.run(in_cgroup(str(tmp_path / "absent" / "cgroup.procs"), ["echo", "ran"]),
                         capture_output=True, text=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, "ran\n", "")


def test_bind_address_presence() -> None:
    assert address_exists("127.0.0.1")
    assert not address_exists("203.0.113.77")  # TEST-NET-3: configured nowhere


# -- end to end in a network namespace ------------------------------------------------------------------------


@dataclass
class Netns:
    name: str
    inside: str  # the namespace's address (its "external interface")

    def run(self, *argv: str, **kwargs) -> subprocess.Popen:
        # nsenter switches only the network namespace; `ip netns exec` would also remount /sys, hiding the
        # cgroup2 mount under it.
        return subprocess.Popen(["nsenter", f"--net=/run/netns/{self.name}", *argv], **kwargs)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nsenter"):
        pytest.skip("needs root, iproute2 and nsenter (util-linux) to build and enter a network namespace")
    if not shutil.which("socat"):
        pytest.skip("socat is not installed (scripts/setup-system.sh installs it)")
    n = next(_names)
    name = f"envdt{os.getpid()}-{n}"
    host_if, ns_if = f"evh{os.getpid() % 100000}{n}", f"evn{os.getpid() % 100000}{n}"
    subnet = f"10.213.{os.getpid() % 250}.{(n % 60) * 4}"
    base = subnet.rsplit(".", 1)
    outside, inside = f"{base[0]}.{int(base[1]) + 1}", f"{base[0]}.{int(base[1]) + 2}"
    try:
        ip("netns", "add", name)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot create a network namespace here: {err.stderr.strip()}")
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", name)
        ip("addr", "add", f"{outside}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        for args in (("addr", "add", f"{inside}/30", "dev", ns_if), ("link", "set", ns_if, "up"),
                     ("link", "set", "lo", "up")):
            ip("-n", name, *args)
        yield Netns(name=name, inside=inside)
    finally:
        # Whatever this test started in there (the daemon stops its socats itself; this is the safety net).
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def greeting(address: str, port: int) -> str | None:
    try:
        with socket.create_connection((address, port), timeout=2) as conn:
            return conn.makefile().readline().strip() or None
    except OSError:
        return None


def socat_pids(group: Path) -> list[int]:
    """The forwards' socats in the group (group leaders: the per-connection forks share their process group)."""
    pids = []
    for pid in map(int, (group / "socats" / "cgroup.procs").read_text().split()):
        try:
            if b"socat" in Path(f"/proc/{pid}/cmdline").read_bytes() and os.getpgid(pid) == pid:
                pids.append(pid)
        except (OSError, ProcessLookupError):
            pass  # exited meanwhile
    return pids


class Listening:
    def __init__(self, ns: Netns, host: str, port: int) -> None:
        self.process = ns.run(sys.executable, "-c", LISTENER, host, str(port),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def command(self, line: str, answer: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == answer

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.mark.slow
def test_loopback_listener_in_the_namespace_is_reachable_from_outside(
    netns: Netns, cgroup_parent: Path, tmp_path: Path  # noqa: F811
) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    daemon = netns.run(sys.executable, "-m", "envd", "-isnotfc", "-port", str(port), "-host", "0.0.0.0",
                       "-port-forward-address", netns.inside, "-cgroup-root", str(cgroup_parent),
                       "-run-dir", str(tmp_path / "run"), "-code-port", "0",
                       env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "envd.log", "wb"))
    listeners: list[Listening] = []
    try:
        wait_for(lambda: _healthy(f"http://{netns.inside}:{port}"), what="the daemon inside the namespace")
        v4_port, v6_port, wild_port = free_port(), free_port(), free_port()
        assert greeting(netns.inside, v4_port) is None  # nothing there yet

        v4 = Listening(netns, "127.0.0.1", v4_port)
        listeners.append(v4)
        assert wait_for(lambda: greeting(netns.inside, v4_port), what="the IPv4 forward") == \
            f"hello from {v4.process.pid}"
        [socat] = wait_for(lambda: socat_pids(cgroup_parent), what="a socat in the socats group")

        v6 = Listening(netns, "::1", v6_port)
        listeners.append(v6)
        assert wait_for(lambda: greeting(netns.inside, v6_port), what="the IPv6 forward") == \
            f"hello from {v6.process.pid}"

        wild = Listening(netns, "0.0.0.0", wild_port)  # reachable already: no socat for it
        listeners.append(wild)
        assert greeting(netns.inside, wild_port) == f"hello from {wild.process.pid}"
        time.sleep(2.5)  # two scan periods
        assert len(socat_pids(cgroup_parent)) == 2

        # The listener goes away: its socat is killed and the port no longer answers from outside.
        v4.command("close", "closed")
        wait_for(lambda: len(socat_pids(cgroup_parent)) == 1, what="the IPv4 socat to be stopped")
        assert greeting(netns.inside, v4_port) is None
        assert not Path(f"/proc/{socat}").exists() or "socat" not in Path(f"/proc/{socat}/cmdline").read_text()
        # The same process listening on the same port again gets a new forward (upstream's quirk Q4, fixed).
        v4.command("open", "ready")
        assert wait_for(lambda: greeting(netns.inside, v4_port), what="the re-created forward") == \
            f"hello from {v4.process.pid}"

        v6.stop()
        wait_for(lambda: greeting(netns.inside, v6_port) is None, what="the IPv6 forward to go away")
    finally:
        for listener in listeners:
            listener.stop()
        daemon.terminate()
        daemon.wait(20)
    assert daemon.returncode == 0, (tmp_path / "envd.log").read_text()[-3000:]
    assert socat_pids(cgroup_parent) == []  # the daemon stops its forwards on the way out
    log = (tmp_path / "envd.log").read_text()
    assert "forwarding port" in log and "stopped forwarding port" in log


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 204
    except httpx.TransportError:
        return False
