"""Workload freeze/thaw (spec/envd.md §3.11) on this machine's real cgroup2 hierarchy.

Every test works in a private group `envd-test-*` under the cgroup2 mount (the fixtures of the cgroup manager
tests) and removes it afterwards; the machine's own groups are never touched. Progress of a busy process is a
counter it rewrites in a file every few milliseconds: frozen, the counter stands still; thawed, it moves.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from envd.config import Config
from envd.errors import Canceled, InvalidArgument
from envd.host.freezer import Freezer, check_freeze_args, own_cgroup, plan_hierarchy
from envd.host.fsfreeze import Fsfreeze
from envd.host.setup import freeze_whole_tree
from tests.conftest import start_daemon, stop_daemon
from tests.test_fsfreeze import loop_fs  # noqa: F401 (fixture)
from tests.unit.test_cgroups import cgroup2_mount, cgroup_parent, reap, spawn_into  # noqa: F401 (fixtures)

COUNTER = (  # rename, so that a process frozen mid-write never leaves the file empty
    "import os, sys, time\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    with open(sys.argv[1] + '.tmp', 'w') as f: f.write(str(n))\n"
    "    os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "    time.sleep(0.005)\n"
)


def count(path: Path) -> int:
    return int(path.read_text())


def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_moving(path: Path) -> None:
    first = count(path)
    wait_for(lambda: count(path) > first, what=f"{path} to move")


def assert_still(path: Path, for_s: float = 0.5) -> None:
    first = count(path)
    time.sleep(for_s)
    assert count(path) == first, f"{path} moved while frozen"


def busy_in(group: Path, counter: Path) -> subprocess.Popen:
    group.mkdir(exist_ok=True)
    child = spawn_into(str(group / "cgroup.procs"), sys.executable, "-c", COUNTER, str(counter))
    wait_for(lambda: counter.exists() and counter.read_text() != "", what="the busy process to start")
    return child


def freeze_setting(group: Path) -> str:
    return (group / "cgroup.freeze").read_text().strip()


@pytest.fixture
def groups(cgroup_parent: Path) -> Iterator[Path]:  # noqa: F811
    """The managed workload groups under a private root; thawed before the root is removed."""
    for name in ("user", "ptys", "socats"):
        (cgroup_parent / name).mkdir()
    yield cgroup_parent
    for freeze in cgroup_parent.rglob("cgroup.freeze"):
        freeze.write_text("0")


# -- parameters ----------------------------------------------------------------------------------------------


def test_freeze_parameters_defaults_clamps_and_refusals() -> None:
    assert check_freeze_args(None, None, None) == ("legacy", 512, 0)
    assert check_freeze_args("", 0, 0) == ("legacy", 512, 0)
    assert check_freeze_args("hierarchy", 100_000, 250) == ("hierarchy", 8192, 250)
    assert check_freeze_args("hierarchy", 3, None) == ("hierarchy", 3, 0)
    with pytest.raises(InvalidArgument, match="unknown freeze mode 'everything'"):
        check_freeze_args("everything", None, None)
    with pytest.raises(InvalidArgument, match="maxCgroups must not be negative"):
        check_freeze_args("hierarchy", -1, None)
    with pytest.raises(InvalidArgument, match="maxWaitMs must not be negative"):
        check_freeze_args("legacy", None, -5)


# -- which groups `hierarchy` freezes --------------------------------------------------------------------------


def test_hierarchy_plan_spares_envds_chain_and_the_allowlist(cgroup_parent: Path) -> None:  # noqa: F811
    for rel in ("a/b", "envd/svc", "envd/sibling", "init.scope", "socats",
                "system.slice/systemd-journald.service", "system.slice/other.service", "user"):
        (cgroup_parent / rel).mkdir(parents=True)
    plan = plan_hierarchy(str(cgroup_parent), "envd/svc", cap=512)
    assert sorted(os.path.relpath(t, cgroup_parent) for t in plan.targets) == [
        "a", "envd/sibling", "system.slice/other.service", "user"]
    assert plan.allowlisted == 3  # init.scope, socats, journald
    assert plan.visited == 10  # six top-level groups, two under envd, two under system.slice; a/b is not walked
    assert not plan.truncated

    capped = plan_hierarchy(str(cgroup_parent), "envd/svc", cap=3)
    assert capped.truncated and capped.visited == 3
    assert len(capped.targets) + capped.allowlisted <= 3


def test_own_cgroup_is_found_relative_to_the_root(cgroup2_mount: Path, cgroup_parent: Path, tmp_path: Path) -> None:  # noqa: F811
    me = next(line for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))[3:]
    expected = os.path.relpath(me, "/") if me != "/" else ""
    assert own_cgroup(str(cgroup2_mount)) == expected
    assert own_cgroup(str(cgroup_parent)) is None  # this process is not inside the private root

    # A nested layout (as in the VM: envd in system.slice/envd.service), read from files in the kernel's format.
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/system.slice/envd.service\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("24 1 0:21 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n")
    assert own_cgroup("/sys/fs/cgroup", str(proc_cgroup), str(mountinfo)) == "system.slice/envd.service"


# -- the core on real groups -----------------------------------------------------------------------------------


def test_legacy_freeze_stops_a_busy_process_and_thaw_resumes_it(groups: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    child = busy_in(groups / "user", counter)
    try:
        assert_moving(counter)

        async def scenario() -> None:
            freezer = Freezer(str(groups), [str(groups / "user"), str(groups / "ptys")])
            result = await freezer.freeze("legacy", 512, 10_000)
            assert result.to_json() | {"sweepMs": 0, "waitMs": 0} == {
                "mode": "legacy", "visited": 2, "allowlisted": 0, "truncated": False, "preFrozen": 0,
                "requested": 2, "frozen": 2, "notFrozen": 0, "failed": 0, "unobservable": 0,
                "sweepMs": 0, "waitMs": 0}
            assert freeze_setting(groups / "user") == "1" and freeze_setting(groups / "socats") == "0"
            assert freezer.watchdog_armed
            await asyncio.to_thread(assert_still, counter)
            audit = freezer.audit()
            assert audit == {"visited": 2, "frozen": 2, "escaped": 0, "violations": 0, "truncated": False}

            thawed = await freezer.thaw()
            assert (thawed.thawed, thawed.failed) == (2, 0)
            assert not freezer.watchdog_armed and freezer.audit() is None
            await asyncio.to_thread(assert_moving, counter)

        asyncio.run(scenario())
    finally:
        reap(child)


def test_hierarchy_freeze_leaves_allowlisted_and_guest_frozen_groups_alone(groups: Path, tmp_path: Path) -> None:
    other, forwarder, guest = tmp_path / "other", tmp_path / "socat", tmp_path / "guest"
    children = [busy_in(groups / "app", other), busy_in(groups / "socats", forwarder),
                busy_in(groups / "guest", guest)]
    try:
        (groups / "guest" / "cgroup.freeze").write_text("1")  # the guest froze this one itself
        wait_for(lambda: "frozen 1" in (groups / "guest" / "cgroup.events").read_text(), what="guest freeze")

        async def scenario() -> None:
            freezer = Freezer(str(groups), [str(groups / "user"), str(groups / "ptys")])
            result = await freezer.freeze("hierarchy", 512, 10_000)
            # app, guest, ptys, socats, user visited; socats allowlisted; guest pre-frozen; three written
            assert (result.visited, result.allowlisted, result.pre_frozen) == (5, 1, 1)
            assert (result.requested, result.frozen, result.not_frozen, result.failed) == (3, 3, 0, 0)
            await asyncio.to_thread(assert_still, other)
            await asyncio.to_thread(assert_moving, forwarder)  # port forwards keep working while frozen

            await freezer.thaw()
            await asyncio.to_thread(assert_moving, other)
            assert freeze_setting(groups / "guest") == "1"  # stays frozen across the thaw
            await asyncio.to_thread(assert_still, guest)

            # A second freeze sees it still guest-frozen; once the guest thaws it, it is an ordinary group again.
            again = await freezer.freeze("hierarchy", 512, 10_000)
            assert (again.pre_frozen, again.requested) == (1, 3)
            (groups / "guest" / "cgroup.freeze").write_text("0")
            third = await freezer.freeze("hierarchy", 512, 10_000)
            assert (third.pre_frozen, third.requested, third.frozen) == (0, 4, 4)
            await freezer.thaw()
            assert freeze_setting(groups / "guest") == "0"
            await asyncio.to_thread(assert_moving, guest)

        asyncio.run(scenario())
    finally:
        reap(*children)


def test_hierarchy_cap_truncates_the_walk(groups: Path) -> None:
    for index in range(6):
        (groups / f"g{index}").mkdir()

    async def scenario() -> None:
        freezer = Freezer(str(groups), [])
        result = await freezer.freeze("hierarchy", 4, 0)
        assert result.truncated and result.visited == 4
        assert result.requested + result.allowlisted == 4
        assert freezer.audit()["truncated"] is True
        await freezer.thaw()

    asyncio.run(scenario())


def test_thaw_watchdog_thaws_by_itself(groups: Path, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    child = busy_in(groups / "user", counter)
    try:
        async def scenario() -> None:
            freezer = Freezer(str(groups), [str(groups / "user")], watchdog_s=1.0)
            await freezer.freeze("legacy", 512, 10_000)
            await asyncio.to_thread(assert_still, counter, 0.3)
            assert freezer.watchdog_armed
            deadline = time.monotonic() + 20
            while freeze_setting(groups / "user") == "1":
                assert time.monotonic() < deadline, "the watchdog did not thaw"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(assert_moving, counter)
            assert not freezer.watchdog_armed

            # A thaw before the window disarms it: the group frozen again is left alone by the old timer.
            await freezer.freeze("legacy", 512, 0)
            await freezer.thaw()
            assert not freezer.watchdog_armed

        asyncio.run(scenario())
    finally:
        reap(child)


def test_a_freeze_that_cannot_get_the_lock_gives_up_when_the_caller_leaves(groups: Path) -> None:
    async def scenario() -> None:
        freezer = Freezer(str(groups), [str(groups / "user")])
        gone = asyncio.Event()
        async with freezer._lock:  # another freeze/thaw in progress
            attempt = asyncio.ensure_future(freezer.freeze("legacy", 512, 1000, cancelled=gone))
            await asyncio.sleep(0.1)
            assert not attempt.done()
            gone.set()
            with pytest.raises(Canceled):
                await attempt
        assert freeze_setting(groups / "user") == "0"  # nothing written
        assert not freezer.watchdog_armed

    asyncio.run(scenario())


def test_without_cgroups_freeze_reports_nothing_and_thaw_is_a_noop() -> None:
    async def scenario() -> None:
        freezer = Freezer(None)
        for mode in ("legacy", "hierarchy"):
            result = await freezer.freeze(mode, 512, 100)
            assert result.to_json() | {"sweepMs": 0, "waitMs": 0} == {
                "mode": mode, "visited": 0, "allowlisted": 0, "truncated": False, "preFrozen": 0, "requested": 0,
                "frozen": 0, "notFrozen": 0, "failed": 0, "unobservable": 0, "sweepMs": 0, "waitMs": 0}
        assert not freezer.watchdog_armed
        assert (await freezer.thaw()).visited == 0

    asyncio.run(scenario())


# -- through the daemon -----------------------------------------------------------------------------------------


def start_busy(url: str, counter: Path) -> int:
    """Start the counter through the process RPC (Connect JSON stream); the process outlives the request."""
    body = json.dumps({"process": {"cmd": sys.executable, "args": ["-c", COUNTER, str(counter)]}}).encode()
    with httpx.stream("POST", f"{url}/process.Process/Start", content=struct.pack(">BI", 0, len(body)) + body,
                      headers={"content-type": "application/connect+json"}, timeout=30) as response:
        assert response.status_code == 200
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) >= 5 and len(data) >= 5 + struct.unpack(">I", data[1:5])[0]:
                break
    event = json.loads(data[5:5 + struct.unpack(">I", data[1:5])[0]])
    return int(event["event"]["start"]["pid"])


def test_daemon_freeze_unfreeze_and_the_thaw_on_init(tmp_path: Path, groups: Path) -> None:
    daemon = start_daemon(tmp_path, "-cgroup-root", str(groups))
    counter = tmp_path / "counter"
    pid = None
    try:
        pid = start_busy(daemon.url, counter)
        assert f"{pid}" in (groups / "user" / "cgroup.procs").read_text().split()
        wait_for(lambda: counter.exists() and counter.read_text() != "", what="the counter")
        assert_moving(counter)

        for mode in ("legacy", "hierarchy"):
            frozen = httpx.post(f"{daemon.url}/freeze", params={"mode": mode, "maxWaitMs": 10_000}, timeout=30)
            assert frozen.status_code == 200, frozen.text
            assert frozen.headers["cache-control"] == "no-store"
            result = frozen.json()
            assert list(result) == ["mode", "visited", "allowlisted", "truncated", "preFrozen", "requested",
                                    "frozen", "notFrozen", "failed", "unobservable", "sweepMs", "waitMs"]
            assert result["mode"] == mode
            assert result["requested"] == result["frozen"] == 2 and result["notFrozen"] == result["failed"] == 0
            if mode == "hierarchy":
                assert result["allowlisted"] == 1  # socats
            assert_still(counter)
            thawed = httpx.post(f"{daemon.url}/unfreeze", timeout=30)
            assert thawed.status_code == 204
            assert_moving(counter)

        # Without maxWaitMs: 204 at once; the next /init thaws and reports what it found frozen.
        assert httpx.post(f"{daemon.url}/freeze", timeout=30).status_code == 204
        wait_for(lambda: "frozen 1" in (groups / "user" / "cgroup.events").read_text(), what="user frozen")
        assert_still(counter)
        init = httpx.post(f"{daemon.url}/init", json={}, timeout=30)
        assert init.status_code == 204
        assert json.loads(init.headers["x-envd-freeze-audit"]) == {
            "visited": 2, "frozen": 2, "escaped": 0, "violations": 0, "truncated": False}
        assert_moving(counter)
        assert "x-envd-freeze-audit" not in httpx.post(f"{daemon.url}/init", json={}, timeout=30).headers

        # The thaw also runs when /init fails applying its data (here: an NFS volume that cannot be mounted).
        assert httpx.post(f"{daemon.url}/freeze", timeout=30).status_code == 204
        wait_for(lambda: "frozen 1" in (groups / "user" / "cgroup.events").read_text(), what="user frozen")
        failed = httpx.post(f"{daemon.url}/init", json={"volumeMounts": [
            {"nfs_target": "127.0.0.1:/no-export", "path": str(tmp_path / "vol")}]}, timeout=60)
        assert failed.status_code == 400 and failed.text.startswith("failed to setup NFS volumes: ")
        assert_moving(counter)
    finally:
        if pid is not None:
            os.kill(pid, 9)
        stop_daemon(daemon)


def test_daemon_refuses_bad_freeze_parameters_and_freezes_nothing(tmp_path: Path, groups: Path) -> None:
    daemon = start_daemon(tmp_path, "-cgroup-root", str(groups))
    try:
        for params, status, message in [
            ({"mode": "everything"}, 400, "unknown freeze mode 'everything' (expected legacy or hierarchy)"),
            ({"mode": "legacy", "maxWaitMs": "-1"}, 400, "maxWaitMs must not be negative (got -1)"),
            ({"mode": "hierarchy", "maxCgroups": "-3"}, 400, "maxCgroups must not be negative (got -3)"),
        ]:
            answer = httpx.post(f"{daemon.url}/freeze", params=params, timeout=30)
            assert (answer.status_code, answer.json()) == (status, {"code": status, "message": message})
        answer = httpx.post(f"{daemon.url}/freeze", params={"maxWaitMs": "soon"}, timeout=30)
        assert answer.status_code == 400
        assert answer.text == 'Invalid format for parameter maxWaitMs: strconv.ParseInt: parsing "soon": invalid syntax\n'
        assert all(freeze_setting(groups / name) == "0" for name in ("user", "ptys", "socats"))
        assert httpx.get(f"{daemon.url}/health", timeout=10).status_code == 204
    finally:
        stop_daemon(daemon)


# -- a workload that cannot freeze: a writer blocked in the kernel on a frozen filesystem -------------------------


@pytest.fixture
def stuck_writer(groups: Path, loop_fs: Path) -> Iterator[subprocess.Popen]:  # noqa: F811
    """A process in `user` sleeping uninterruptibly (a write to a frozen fs): the cgroup freezer cannot stop
    it, so its group never reports `frozen 1` until the filesystem is thawed."""
    fs = Fsfreeze(str(loop_fs))
    asyncio.run(fs.freeze())
    child = spawn_into(str(groups / "user" / "cgroup.procs"), "sh", "-c", f"echo data > {loop_fs / 'f'}")
    try:
        wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "D",
                 what="the writer to block")
        yield child
    finally:
        asyncio.run(fs.thaw())
        for freeze in groups.rglob("cgroup.freeze"):
            freeze.write_text("0")
        reap(child)


def test_a_group_that_does_not_freeze_in_time_is_reported_not_frozen(groups: Path, stuck_writer) -> None:
    async def scenario() -> None:
        freezer = Freezer(str(groups), [str(groups / "user"), str(groups / "ptys")])
        result = await freezer.freeze("legacy", 512, 300)
        assert (result.requested, result.frozen, result.not_frozen, result.failed) == (2, 1, 1, 0)
        assert result.wait_ms >= 300
        audit = freezer.audit()
        assert (audit["frozen"], audit["violations"]) == (1, 1)
        await freezer.thaw()

    asyncio.run(scenario())


def test_daemon_answers_503_when_the_caller_leaves_during_the_wait(tmp_path: Path, groups: Path, stuck_writer) -> None:
    daemon = start_daemon(tmp_path, "-cgroup-root", str(groups))
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{daemon.url}/freeze", params={"maxWaitMs": 60_000}, timeout=1.5)
        # The daemon gave up the wait (and the lock) when the client left: the next freeze is answered at once.
        started = time.monotonic()
        answer = httpx.post(f"{daemon.url}/freeze", params={"maxWaitMs": 200}, timeout=30)
        assert answer.status_code == 200 and answer.json()["notFrozen"] == 1
        assert time.monotonic() - started < 10
        assert httpx.post(f"{daemon.url}/unfreeze", timeout=30).status_code == 204
        assert freeze_setting(groups / "user") == "0"
    finally:
        stop_daemon(daemon)
    assert "caller disconnected while waiting" in (tmp_path / "envd.log").read_text()


def test_a_local_run_confines_freeze_and_thaw_to_its_own_groups(groups: Path, tmp_path: Path) -> None:
    assert freeze_whole_tree(Config(is_not_fc=False))  # the VM: every cgroup is the sandbox's
    assert not freeze_whole_tree(Config(is_not_fc=True))  # a local run on the machine's own hierarchy
    assert freeze_whole_tree(Config(is_not_fc=True, cgroup_root=str(groups)))  # a root of its own (the tests)

    counter = tmp_path / "counter"
    child = busy_in(groups / "other", counter)
    try:
        (groups / "paused").mkdir()
        (groups / "paused" / "cgroup.freeze").write_text("1")  # frozen by someone else, before envd started

        async def scenario() -> None:
            freezer = Freezer(str(groups), [str(groups / "user"), str(groups / "ptys")], whole_tree=False)
            result = await freezer.freeze("hierarchy", 512, 10_000)
            assert (result.mode, result.visited, result.requested, result.frozen) == ("hierarchy", 2, 2, 2)
            await asyncio.to_thread(assert_moving, counter)  # not envd's: untouched
            thawed = await freezer.thaw()
            assert (thawed.visited, thawed.thawed) == (2, 2)
            assert freeze_setting(groups / "paused") == "1"  # not envd's to thaw either

        asyncio.run(scenario())
    finally:
        reap(child)


def test_hierarchy_freeze_spares_the_daemons_own_cgroup_chain(tmp_path: Path, groups: Path) -> None:
    """As in the VM: envd runs in system.slice/envd.service under the root it freezes; it must keep serving."""
    own = groups / "system.slice" / "envd.service"
    own.mkdir(parents=True)
    counter = tmp_path / "counter"
    neighbour = busy_in(groups / "system.slice" / "other.service", counter)
    daemon = start_daemon(tmp_path, "-cgroup-root", str(groups))
    try:
        (own / "cgroup.procs").write_text(str(daemon.process.pid))
        answer = httpx.post(f"{daemon.url}/freeze", params={"mode": "hierarchy", "maxWaitMs": 10_000}, timeout=30)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        # other.service, ptys, user written; socats allowlisted; the chain (system.slice, envd.service) descended
        assert (result["requested"], result["frozen"], result["allowlisted"]) == (3, 3, 1)
        assert freeze_setting(own) == "0" and freeze_setting(groups / "system.slice") == "0"
        assert httpx.get(f"{daemon.url}/health", timeout=10).status_code == 204  # envd itself still runs
        assert_still(counter)
        assert httpx.post(f"{daemon.url}/unfreeze", timeout=30).status_code == 204
        assert_moving(counter)
    finally:
        stop_daemon(daemon)
        reap(neighbour)
