"""/init side effects on the host (spec/envd.md §3.4, §8.5, §8.7, §8.8): CA bundle, NFS volume mounts, clock.

CA bundle: the daemon installs a test CA into this machine's real system trust store and a child process's
`openssl verify` and Python `ssl` then trust a certificate it signed; the store is restored afterwards.

NFS: this machine's kernel has no NFS client (no `nfs` in /proc/filesystems, no modules to load, no
mount.nfs helper), so no NFS mount can succeed here whatever server runs. The daemon test shows the real
failure path (the real `mount -t nfs` fails, /init answers 400 naming the command). The mount logic itself
(ledger, findmnt/umount, remount on a new lifecycle, first failure, time budget) runs against a stand-in
mount program that checks the NFS command line and bind-mounts the export instead; findmnt, umount and the
mounts are real.

Clock: setting CLOCK_REALTIME changes the clock of the whole machine (a time namespace virtualises only the
monotonic and boot clocks), so the clock-set test runs only inside a VM that envd owns (ENVD_TEST_SET_CLOCK=1);
here the drift decision is unit-tested (tests/unit/test_host.py) and the skip prints why.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from envd.errors import Canceled, InvalidArgument
from envd.host.ca_bundle import PERSISTED_COPY, SYSTEM_BUNDLE, CABundleInstaller, check_pem
from envd.host.clock import SystemClock
from envd.host.volumes import NFS_OPTIONS, MountError, Volume, VolumeMounter, mount_argv, parse_volumes
from tests.conftest import start_daemon, stop_daemon


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA (unique subject) and a `localhost` certificate it signed."""
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("ca")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", f"/CN=envd test CA {uuid.uuid4()}", cwd=d)
    openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


# -- CA bundle: validation and the installer core ------------------------------------------------------------


def test_pem_validation_refuses_garbage_before_anything_is_written(test_ca: Path) -> None:
    good = (test_ca / "ca.pem").read_text()
    check_pem(good)
    check_pem(good + (test_ca / "leaf.pem").read_text())  # several blocks
    broken_body = good.replace(good.splitlines()[3], "!!!!" + good.splitlines()[3][4:])
    for pem, message in [
        ("just text", "holds no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a valid PEM certificate bundle"),
        (broken_body, "not a valid PEM certificate bundle"),
        (good + "-----BEGIN CERTIFICATE-----\n", "certificate"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            check_pem(pem)


def test_a_new_bundle_replaces_the_previous_one_atomically(tmp_path: Path, test_ca: Path) -> None:
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text("SYSTEM CAS\n")
    persisted = tmp_path / "share" / "e2b-ca.crt"
    first, second = (test_ca / "ca.pem").read_text(), (test_ca / "leaf.pem").read_text()

    async def scenario() -> None:
        installer = CABundleInstaller(bundle=bundle, persisted=persisted)
        await installer.install(first + "\n\n")
        assert bundle.read_text() == "SYSTEM CAS\n" + first  # synchronous part: appended, normalised
        await installer.settled()
        inode = bundle.stat().st_ino
        await installer.install(second)
        await installer.settled()
        assert bundle.read_text() == "SYSTEM CAS\n" + second  # the old text pruned
        assert bundle.stat().st_ino != inode  # by a rename, never a half-written bundle
        assert stat.S_IMODE(bundle.stat().st_mode) == 0o644
        assert persisted.read_text() == second

    asyncio.run(scenario())


def test_a_ca_install_waiting_for_another_gives_up_when_the_caller_leaves(tmp_path: Path, test_ca: Path) -> None:
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text("SYSTEM CAS\n")

    async def scenario() -> None:
        installer = CABundleInstaller(bundle=bundle, persisted=tmp_path / "copy.crt")
        gone = asyncio.Event()
        async with installer._lock:  # another install in progress
            attempt = asyncio.ensure_future(installer.install((test_ca / "ca.pem").read_text(), gone))
            await asyncio.sleep(0.1)
            gone.set()
            with pytest.raises(Canceled, match="CA install already in progress"):
                await attempt
        assert bundle.read_text() == "SYSTEM CAS\n"

    asyncio.run(scenario())


# -- CA bundle: the daemon and the real system trust store ------------------------------------------------------


@pytest.fixture
def system_trust_store() -> Iterator[Path]:
    """This machine's bundle, restored byte for byte afterwards (and the persisted copy removed or restored)."""
    if os.geteuid() != 0 or not SYSTEM_BUNDLE.is_file():
        pytest.skip(f"needs root and {SYSTEM_BUNDLE}")
    original = SYSTEM_BUNDLE.read_bytes()
    mode = stat.S_IMODE(SYSTEM_BUNDLE.stat().st_mode)
    copy = PERSISTED_COPY.read_bytes() if PERSISTED_COPY.exists() else None
    try:
        yield SYSTEM_BUNDLE
    finally:
        tmp = SYSTEM_BUNDLE.with_name(f".restore-{os.getpid()}")
        tmp.write_bytes(original)
        tmp.chmod(mode)
        os.rename(tmp, SYSTEM_BUNDLE)
        if copy is None:
            PERSISTED_COPY.unlink(missing_ok=True)
        else:
            PERSISTED_COPY.write_bytes(copy)


class TLSServer:
    """Serves `leaf.pem` for `localhost`; handshakes that fail (untrusted) are simply dropped."""

    def __init__(self, ca_dir: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(ca_dir / "leaf.pem", ca_dir / "leaf.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.sock.close()


CLIENT = (
    "import socket, ssl, sys\n"
    "context = ssl.create_default_context()\n"
    "with socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10) as raw:\n"
    "    with context.wrap_socket(raw, server_hostname='localhost') as tls:\n"
    "        print(tls.recv(2).decode())\n"
)


def child_trusts(ca_dir: Path, server: TLSServer) -> tuple[bool, bool]:
    """(openssl verify, Python ssl handshake) in child processes using the default trust store only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT")}
    verify = subprocess.run(["openssl", "verify", str(ca_dir / "leaf.pem")], capture_output=True, text=True, env=env)
    python = subprocess.run([sys.executable, "-c", CLIENT, str(server.port)], capture_output=True, text=True,
                            env=env, timeout=30)
    return verify.returncode == 0, python.returncode == 0 and python.stdout.strip() == "ok"


def test_ca_bundle_from_init_is_trusted_by_openssl_and_python_in_a_child(
    tmp_path: Path, test_ca: Path, system_trust_store: Path
) -> None:
    server = TLSServer(test_ca)
    daemon = start_daemon(tmp_path)
    try:
        assert child_trusts(test_ca, server) == (False, False)
        answer = httpx.post(f"{daemon.url}/init", json={"caBundle": (test_ca / "ca.pem").read_text()}, timeout=30)
        assert answer.status_code == 204, answer.text
        assert child_trusts(test_ca, server) == (True, True)
        # the background step persists the copy update-ca-certificates would keep
        deadline = time.monotonic() + 20
        while not (PERSISTED_COPY.exists() and PERSISTED_COPY.read_text() == (test_ca / "ca.pem").read_text()):
            assert time.monotonic() < deadline, "the persisted copy was not written"
            time.sleep(0.05)
    finally:
        stop_daemon(daemon)
        server.close()


def test_malformed_init_inputs_are_refused_with_nothing_applied(tmp_path: Path, test_ca: Path) -> None:
    before = hashlib.sha256(SYSTEM_BUNDLE.read_bytes()).hexdigest() if SYSTEM_BUNDLE.exists() else None
    daemon = start_daemon(tmp_path)
    try:
        good = (test_ca / "ca.pem").read_text()
        for body, status, text in [
            ({"envVars": {"FOO": "1"}, "timestamp": "2030-13-45T99:00:00Z"}, 400, ""),
            ({"envVars": {"FOO": "1"}, "timestamp": "2030-01-01T00:00:00"}, 400, ""),  # no offset
            ({"envVars": {"FOO": "1"}, "caBundle": "not a certificate"}, 400,
             "failed to install CA bundle: caBundle holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line)"),
            ({"envVars": {"FOO": "1"}, "caBundle": good.replace("M", "*", 3)}, 400, None),
            ({"envVars": {"FOO": "1"}, "volumeMounts": [{"nfs_target": "h:/x"}]}, 400, ""),
            ({"envVars": {"FOO": "1"}, "volumeMounts": {"path": "/x"}}, 400, ""),
        ]:
            answer = httpx.post(f"{daemon.url}/init", json=body, timeout=30)
            assert answer.status_code == status, body
            if text is not None:
                assert answer.text == text
            else:
                assert answer.text.startswith("failed to install CA bundle: caBundle is not a valid PEM")
            assert answer.headers["x-envd-version"] == "0.6.13"
        assert "FOO" not in httpx.get(f"{daemon.url}/envs", timeout=10).json()  # nothing applied
        assert httpx.post(f"{daemon.url}/upgrade", timeout=10).status_code == 409  # still not initialized
    finally:
        stop_daemon(daemon)
    if before is not None:
        assert hashlib.sha256(SYSTEM_BUNDLE.read_bytes()).hexdigest() == before


# -- NFS volume mounts -------------------------------------------------------------------------------------------


def kernel_has_nfs() -> bool:
    return any(line.split()[-1].startswith("nfs") for line in Path("/proc/filesystems").read_text().splitlines())


def test_volume_mount_command_and_request_shape() -> None:
    volume = Volume(nfs_target="10.0.0.1:/exports/data", path="/mnt/data")
    assert mount_argv(volume) == ["mount", "-v", "-t", "nfs", "-o", NFS_OPTIONS, "10.0.0.1:/exports/data", "/mnt/data"]
    assert NFS_OPTIONS == ("fg,hard,sync,rsize=1048576,wsize=1048576,mountproto=tcp,mountport=2049,proto=tcp,"
                           "port=2049,nfsvers=3,noacl,noac,lookupcache=none")
    assert parse_volumes([]) == []
    assert parse_volumes([{"nfs_target": "h:/x", "path": "/v", "extra": 1}]) == [Volume("h:/x", "/v")]
    for bad, message in [({}, "must be an array"), ([1], r"\[0\] must be an object"),
                         ([{"path": "/v"}], "nfs_target must be a non-empty string"),
                         ([{"nfs_target": "h:/x", "path": "rel"}], "path must be an absolute path")]:
        with pytest.raises(InvalidArgument, match=message):
            parse_volumes(bad)


# Checks the NFS command line it is given, logs it, then bind-mounts the export ("<host>:<dir>") instead.
STAND_IN = """#!{python}
import subprocess, sys, time
args = sys.argv[1:]
expected = ["-v", "-t", "nfs", "-o", {options!r}]
if args[:5] != expected or len(args) != 7:
    sys.exit("stand-in: unexpected mount command: %r" % args)
target, path = args[5], args[6]
with open({log!r}, "a") as log:
    log.write(target + " " + path + "\\n")
host, _, export = target.partition(":")
if host == "slow":
    time.sleep(30)
sys.exit(subprocess.run(["mount", "--bind", export, path]).returncode)
"""


def mount_sources(path: Path) -> list[str]:
    out = subprocess.run(["findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", str(path)],
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    log = tmp_path / "mounts.log"
    script = tmp_path / "mount-nfs-stand-in"
    script.write_text(STAND_IN.format(python=sys.executable, options=NFS_OPTIONS, log=str(log)))
    script.chmod(0o755)
    print(f"\nNFS mounts use a bind-mount stand-in: the kernel has {'an' if kernel_has_nfs() else 'no'} NFS client")
    yield script, log
    for _ in range(3):  # stacked mounts, if a test left any
        out = subprocess.run(["findmnt", "--list", "--noheadings", "--output", "TARGET"], capture_output=True,
                             text=True).stdout.split()
        mine = [m for m in out if m.startswith(str(tmp_path))]
        for target in mine:
            subprocess.run(["umount", "--lazy", target], capture_output=True)


def test_volume_ledger_mounts_once_per_lifecycle_and_remounts_on_a_new_one(tmp_path: Path, stand_in) -> None:
    script, log = stand_in
    exports = {name: tmp_path / "exports" / name for name in ("a", "b", "c")}
    for name, export in exports.items():
        export.mkdir(parents=True)
        (export / "marker").write_text(name)
    vol = {name: Volume(f"nfs.local:{export}", str(tmp_path / "vols" / name)) for name, export in exports.items()}

    def calls() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    async def scenario() -> None:
        mounter = VolumeMounter(mount=str(script))
        await mounter.setup([vol["a"], vol["b"]], "life-1")
        assert (Path(vol["a"].path) / "marker").read_text() == "a"  # mkdir -p'd and mounted
        assert (Path(vol["b"].path) / "marker").read_text() == "b"
        assert len(calls()) == 2 and mounter.ledger == {vol["a"].path: "life-1", vol["b"].path: "life-1"}

        await mounter.setup([vol["a"], vol["b"]], "life-1")  # repeated /init: nothing to do
        assert len(calls()) == 2

        await mounter.setup([vol["a"], vol["c"]], "life-2")  # resume: a remounted, c new, b left mounted
        assert len(calls()) == 4
        assert mount_sources(Path(vol["a"].path)) == [vol["a"].path]  # unmounted first, not stacked
        assert (Path(vol["c"].path) / "marker").read_text() == "c"
        assert mounter.ledger == {vol["a"].path: "life-2", vol["b"].path: "life-1", vol["c"].path: "life-2"}

        await mounter.setup([vol["a"]], None)  # a missing lifecycle ID counts as ""
        assert mounter.ledger[vol["a"].path] == "" and len(calls()) == 5

    asyncio.run(scenario())


def test_volume_failures_name_the_command_and_are_not_recorded(tmp_path: Path, stand_in) -> None:
    script, log = stand_in
    missing = Volume(f"nfs.local:{tmp_path / 'no-such-export'}", str(tmp_path / "vols" / "m"))
    slow = Volume("slow:/x", str(tmp_path / "vols" / "s"))

    async def scenario() -> None:
        mounter = VolumeMounter(mount=str(script), budget_s=1.0)
        with pytest.raises(MountError) as failed:
            await mounter.setup([missing], "l")
        assert str(failed.value).startswith(f"{script} -v -t nfs -o {NFS_OPTIONS} {missing.nfs_target} "
                                            f"{missing.path}: exit status 32: ")
        assert mounter.ledger == {}
        started = time.monotonic()
        with pytest.raises(MountError, match="did not finish within 1 s"):
            await mounter.setup([slow], "l")
        assert time.monotonic() - started < 10
        # A second /init while one is still mounting returns at once (skips).
        mounter.budget_s = 5.0
        first = asyncio.ensure_future(mounter.setup([slow], "l"))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(mounter.setup([slow], "l"), 1)
        first.cancel()

    asyncio.run(scenario())


def test_init_with_an_nfs_volume_reports_the_real_mount_failure(tmp_path: Path) -> None:
    if kernel_has_nfs() and shutil.which("mount.nfs"):
        pytest.skip("this machine can mount NFS: the failure path needs a machine that cannot")
    daemon = start_daemon(tmp_path)
    path = tmp_path / "volume"
    try:
        answer = httpx.post(f"{daemon.url}/init", json={
            "envVars": {"APPLIED": "1"}, "volumeMounts": [{"nfs_target": "127.0.0.1:/export", "path": str(path)}],
            "lifecycleID": "l1"}, timeout=30)
        assert answer.status_code == 400
        assert answer.text.startswith(
            f"failed to setup NFS volumes: mount -v -t nfs -o {NFS_OPTIONS} 127.0.0.1:/export {path}: exit status ")
        assert path.is_dir()  # mkdir -p ran; nothing is mounted there
        assert mount_sources(path) == []
        # §3.4.2: steps already applied stay applied, envd stays un-initialized, and keeps serving.
        assert httpx.get(f"{daemon.url}/envs", timeout=10).json()["APPLIED"] == "1"
        assert httpx.post(f"{daemon.url}/upgrade", timeout=10).status_code == 409
        assert httpx.post(f"{daemon.url}/init", json={"volumeMounts": []}, timeout=30).status_code == 204
    finally:
        stop_daemon(daemon)


# -- clock --------------------------------------------------------------------------------------------------------


def test_clock_is_set_from_init_timestamp_where_envd_owns_the_clock() -> None:
    if os.environ.get("ENVD_TEST_SET_CLOCK") != "1":
        reason = ("setting CLOCK_REALTIME would change this whole machine's clock (time namespaces do not cover "
                  "it); run with ENVD_TEST_SET_CLOCK=1 inside a throw-away VM")
        print(f"\nclock-set test skipped: {reason}")
        pytest.skip(reason)
    target = time.time_ns() + 3_600_000_000_000
    try:
        SystemClock().sync(target)
        assert abs(time.time_ns() - target) < 5_000_000_000
    finally:
        SystemClock().sync(time.time_ns() - 3_600_000_000_000)
