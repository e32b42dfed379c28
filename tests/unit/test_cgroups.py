"""cgroup v2 manager (spec/envd.md §8.9) and envd's own OOM protection (§1.1), on real kernel hierarchies.

Every test that needs cgroup v2 works in a private group `envd-test-*` under a cgroup2 mount and removes it
afterwards. Where the kernel lacks what a test needs (no cgroup2, no memory controller in v2), the test is
skipped with the reason.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from envd.config import Config
from envd.host.cgroups import (
    Cgroups,
    GroupSpec,
    NoCgroups,
    MiB,
    create_cgroup_manager,
    enable_controllers,
    group_specs,
    memory_cap,
    read_mem_total,
    setup_cgroups,
)
from envd.host.oom import protect_daemon
from envd.host.statfs import CGROUP2_SUPER_MAGIC, fs_magic
from tests.conftest import start_daemon, stop_daemon

PAGE = os.sysconf("SC_PAGE_SIZE")
GROUPS = ("user", "ptys", "socats")
DOMAIN_CONTROLLERS = ("memory", "io", "hugetlb", "rdma", "misc")  # subject to "no internal processes"
_names = itertools.count()


def words(path: Path) -> list[str]:
    return path.read_text().split()


def rmdir_tree(group: Path) -> None:
    """Remove a cgroup and its sub-groups, bottom-up (cgroup dirs only go away with rmdir, when empty)."""
    for sub in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    group.rmdir()


def spawn_into(procs_path: str, *argv: str) -> subprocess.Popen:
    """A child placed the way the process spawner does it: it writes "0" to cgroup.procs before exec."""

    def place() -> None:
        with open(procs_path, "w") as procs:
            procs.write("0")

    return subprocess.Popen(list(argv) or ["sleep", "60"], preexec_fn=place)


def reap(*children: subprocess.Popen) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def skip_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- fixtures: a cgroup2 hierarchy and private groups in it ------------------------------------------------


@pytest.fixture(scope="session")
def cgroup2_mount() -> Iterator[Path]:
    """An existing cgroup2 mount; else a fresh one in a temporary directory (as root); else skip.

    An existing mount comes first: mounting cgroup2 again re-applies the mount options (nsdelegate,
    memory_recursiveprot) to the one system-wide hierarchy, so a bare second mount would strip the
    options systemd mounted it with.
    """
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, mountpoint, fstype, options, *_ = line.split()
            if fstype == "cgroup2" and "rw" in options.split(","):
                yield Path(mountpoint)
                return
    target = Path(tempfile.mkdtemp(prefix="envd-cgroup2-"))
    mounted = subprocess.run(["mount", "-t", "cgroup2", "none", str(target)], capture_output=True, text=True)
    if mounted.returncode != 0:
        target.rmdir()
        pytest.skip(f"no cgroup2 mount and cannot mount one: {mounted.stderr.strip()}")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)
    target.rmdir()


def _borrow_controller(mount: Path, choices: tuple[str, ...]) -> Iterator[str | None]:
    """One of `choices` delegated to the mount root's children: already on, or turned on for the session."""
    subtree = mount / "cgroup.subtree_control"
    active = words(subtree)
    for controller in choices:
        if controller in active:
            yield controller
            return
    for controller in choices:
        if controller in words(mount / "cgroup.controllers"):
            try:
                subtree.write_text(f"+{controller}")
            except OSError:
                continue
            yield controller
            try:
                subtree.write_text(f"-{controller}")  # restore the machine's setting
            except OSError:
                pass
            return
    yield None


@pytest.fixture(scope="session")
def domain_controller(cgroup2_mount: Path) -> Iterator[str]:
    borrowed = _borrow_controller(cgroup2_mount, DOMAIN_CONTROLLERS)
    controller = next(borrowed)
    if controller is None:
        pytest.skip(f"no domain controller can be delegated in {cgroup2_mount} "
                    f"(cgroup.controllers: {' '.join(words(cgroup2_mount / 'cgroup.controllers')) or 'none'})")
    yield controller
    next(borrowed, None)


@pytest.fixture(scope="session")
def memory_controller(cgroup2_mount: Path) -> Iterator[str]:
    borrowed = _borrow_controller(cgroup2_mount, ("memory",))
    controller = next(borrowed)
    if controller is None:
        available = " ".join(words(cgroup2_mount / "cgroup.controllers")) or "none"
        v1 = " (memory is bound to a cgroup v1 hierarchy on this machine)" if Path(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() else ""
        print(f"\nmemory-hog test skipped: no memory controller in cgroup v2 at {cgroup2_mount}; "
              f"available there: {available}{v1}")
        pytest.skip(f"no memory controller in the cgroup v2 hierarchy at {cgroup2_mount} "
                    f"(available: {available}){v1}")
    yield controller
    next(borrowed, None)


@pytest.fixture
def cgroup_parent(cgroup2_mount: Path) -> Iterator[Path]:
    """A private, empty cgroup to use as envd's cgroup root; removed afterwards with everything below it."""
    parent = cgroup2_mount / f"envd-test-{os.getpid()}-{next(_names)}"
    parent.mkdir()
    yield parent
    rmdir_tree(parent)


# -- memory cap and meminfo --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mem_total, cap",
    [
        (24 * 1024 * MiB, 24 * 1024 * MiB - 128 * MiB),  # big machine: 128 MiB held back
        (1024 * MiB, 896 * MiB),  # MemTotal/8 == 128 MiB exactly
        (512 * MiB, 448 * MiB),  # small VM: one eighth held back
        (1_000_001, 1_000_001 - 125_000),  # MemTotal/8 rounds down
        (0, 0),
    ],
)
def test_memory_cap_is_memtotal_minus_the_smaller_of_an_eighth_and_128_mib(mem_total: int, cap: int) -> None:
    assert memory_cap(mem_total) == cap


def test_group_table_matches_the_spec() -> None:
    specs = {spec.name: dict(spec.properties) for spec in group_specs(2048 * MiB)}
    cap = str(1920 * MiB)
    assert specs == {
        "user": {"cpu.weight": "50", "io.weight": "default 10", "memory.high": cap, "memory.max": cap},
        "ptys": {"cpu.weight": "200", "io.weight": "default 50", "memory.high": cap, "memory.max": cap},
        "socats": {"cpu.weight": "150", "io.weight": "default 50",
                   "memory.min": str(5 * MiB), "memory.low": str(8 * MiB)},
    }


def test_mem_total_comes_from_meminfo_in_bytes(tmp_path: Path) -> None:
    assert read_mem_total() == psutil.virtual_memory().total
    fake = tmp_path / "meminfo"
    fake.write_text("MemFree:  10 kB\nMemTotal:        2048 kB\n")
    assert read_mem_total(str(fake)) == 2048 * 1024
    fake.write_text("MemFree:  10 kB\n")
    with pytest.raises(ValueError, match="no MemTotal"):
        read_mem_total(str(fake))


# -- the no-op fallback ------------------------------------------------------------------------------------


def test_root_on_another_filesystem_gives_the_noop_manager(tmp_path: Path, caplog) -> None:
    tmpfs = Path(tempfile.mkdtemp(dir="/dev/shm"))  # /sys/fs/cgroup itself is a tmpfs on hybrid hosts
    try:
        assert fs_magic(str(tmpfs)) == 0x01021994
        for root in (tmp_path, tmpfs):
            caplog.clear()
            manager = create_cgroup_manager(Config(cgroup_root=str(root)))
            assert isinstance(manager, NoCgroups)
            assert manager.procs_path("user") is None and manager.procs_path("pty") is None
            assert list(root.iterdir()) == []  # nothing created
            assert skip_lines(caplog) == [
                "cgroups unavailable, processes stay in envd's cgroup: "
                f"{root} is not a cgroup v2 filesystem (statfs magic {fs_magic(str(root)):#x})"]
    finally:
        tmpfs.rmdir()


def test_missing_root_gives_the_noop_manager(tmp_path: Path, caplog) -> None:
    manager = create_cgroup_manager(Config(cgroup_root=str(tmp_path / "absent")))
    assert isinstance(manager, NoCgroups)
    [line] = skip_lines(caplog)
    assert "No such file or directory" in line and str(tmp_path / "absent") in line


def test_no_cgroups_flag_skips_even_a_real_cgroup2_root(cgroup_parent: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    manager = create_cgroup_manager(Config(cgroup_root=str(cgroup_parent), no_cgroups=True))
    assert isinstance(manager, NoCgroups)
    assert manager.procs_path("user") is None and manager.group_path("pty") is None
    assert not any(p.is_dir() for p in cgroup_parent.iterdir())
    assert "-no-cgroups" in caplog.text


def test_unknown_kind_is_a_caller_error_for_both_managers(cgroup_parent: Path) -> None:
    for manager in (NoCgroups(), create_cgroup_manager(Config(cgroup_root=str(cgroup_parent)))):
        with pytest.raises(ValueError, match="unknown cgroup kind 'ptys'"):
            manager.procs_path("ptys")


# -- a real cgroup2 hierarchy --------------------------------------------------------------------------------


def test_groups_are_created_and_a_child_lands_in_its_group(cgroup_parent: Path, cgroup2_mount: Path) -> None:
    assert fs_magic(str(cgroup_parent)) == CGROUP2_SUPER_MAGIC
    manager = create_cgroup_manager(Config(cgroup_root=str(cgroup_parent)))
    assert isinstance(manager, Cgroups)
    for name in GROUPS:
        assert (cgroup_parent / name).is_dir()
        assert (cgroup_parent / name).stat().st_mode & 0o777 == 0o755
    assert manager.procs_path("user") == str(cgroup_parent / "user" / "cgroup.procs")
    assert manager.procs_path("pty") == str(cgroup_parent / "ptys" / "cgroup.procs")
    assert manager.procs_path("socat") == str(cgroup_parent / "socats" / "cgroup.procs")

    user = spawn_into(manager.procs_path("user"))
    pty = spawn_into(manager.procs_path("pty"))
    try:
        assert words(cgroup_parent / "user" / "cgroup.procs") == [str(user.pid)]
        assert words(cgroup_parent / "ptys" / "cgroup.procs") == [str(pty.pid)]
        relative = "/" + str(cgroup_parent.relative_to(cgroup2_mount))
        assert f"0::{relative}/user\n" in Path(f"/proc/{user.pid}/cgroup").read_text()
        assert str(os.getpid()) not in words(cgroup_parent / "user" / "cgroup.procs")  # the parent stays put
    finally:
        reap(user, pty)
    assert words(cgroup_parent / "user" / "cgroup.procs") == []


def test_properties_are_written_where_the_controller_exists_and_skipped_with_a_log_line_elsewhere(
    cgroup_parent: Path, caplog
) -> None:
    manager = create_cgroup_manager(Config(cgroup_root=str(cgroup_parent)))
    assert isinstance(manager, Cgroups)
    lines = skip_lines(caplog)
    written = skipped = 0
    for spec in group_specs(read_mem_total()):
        for name, value in spec.properties:
            path = cgroup_parent / spec.name / name
            if path.exists():
                # memory values are kept in pages
                expected = str(int(value) // PAGE * PAGE) if name.startswith("memory.") else value
                assert path.read_text().strip() == expected, path
                written += 1
            else:
                assert lines.count(f"cgroup property {path} not set (missing: controller not enabled)") == 1
                skipped += 1
    assert written + skipped == 12
    print(f"\ncgroup properties under {cgroup_parent}: {written} written, {skipped} skipped "
          f"(controllers delegated: {' '.join(words(cgroup_parent / 'cgroup.controllers')) or 'none'})")


def test_property_writes_on_real_cgroup_files(cgroup_parent: Path, caplog) -> None:
    # Core cgroup files exist whatever the controllers: one writable, one read-only, one absent.
    spec = GroupSpec("g", (("cgroup.max.depth", "3"), ("cgroup.controllers", "cpu"), ("no.such", "1"),
                           ("cgroup.max.descendants", "7")))
    setup_cgroups(str(cgroup_parent), controllers=(), specs=[spec])
    group = cgroup_parent / "g"
    assert (group / "cgroup.max.depth").read_text() == "3\n"
    assert (group / "cgroup.max.descendants").read_text() == "7\n"
    read_only, absent = skip_lines(caplog)
    # The kernel refuses the read-only file with EACCES or EINVAL depending on the version.
    assert read_only.startswith(f"cgroup property {group}/cgroup.controllers not set (")
    assert absent == f"cgroup property {group}/no.such not set (missing: controller not enabled)"


def test_a_second_start_over_existing_groups_works(cgroup_parent: Path) -> None:
    first = create_cgroup_manager(Config(cgroup_root=str(cgroup_parent)))
    child = spawn_into(first.procs_path("user"))
    try:
        second = create_cgroup_manager(Config(cgroup_root=str(cgroup_parent)))  # groups exist, one is busy
        assert isinstance(second, Cgroups)
        other = spawn_into(second.procs_path("user"))
        try:
            assert sorted(words(cgroup_parent / "user" / "cgroup.procs")) == sorted([str(child.pid), str(other.pid)])
        finally:
            reap(other)
    finally:
        reap(child)


def test_controllers_are_enabled_unless_the_root_holds_processes(
    cgroup_parent: Path, domain_controller: str, caplog
) -> None:
    assert domain_controller in words(cgroup_parent / "cgroup.controllers")
    assert enable_controllers(str(cgroup_parent), [domain_controller, "nosuch"]) == [domain_controller]
    assert domain_controller in words(cgroup_parent / "cgroup.subtree_control")
    assert skip_lines(caplog) == [f"cgroup controllers not enabled under {cgroup_parent}: nosuch (not in "
                                  f"{cgroup_parent}/cgroup.controllers); their properties will be skipped"]
    caplog.clear()
    assert enable_controllers(str(cgroup_parent), [domain_controller]) == [domain_controller]  # idempotent
    assert skip_lines(caplog) == []

    # A non-root cgroup with processes of its own cannot delegate domain controllers to children.
    busy = cgroup_parent / "busy"
    busy.mkdir()
    resident = spawn_into(str(busy / "cgroup.procs"))
    try:
        manager = setup_cgroups(str(busy), controllers=(domain_controller,), specs=[GroupSpec("user", ())])
        assert words(busy / "cgroup.subtree_control") == []
        assert skip_lines(caplog) == [
            f"cgroup controllers not enabled under {busy}: {domain_controller} ({busy} holds processes of its "
            "own: no internal processes rule); their properties will be skipped"]
        child = spawn_into(manager.procs_path("user"))  # the groups still work for placement
        try:
            assert words(busy / "user" / "cgroup.procs") == [str(child.pid)]
        finally:
            reap(child)
    finally:
        reap(resident)


@pytest.mark.slow
def test_memory_hog_is_killed_inside_its_cgroup(cgroup_parent: Path, memory_controller: str) -> None:
    mem_total = 192 * MiB  # a small VM's worth: cap = 168 MiB
    manager = setup_cgroups(str(cgroup_parent), specs=group_specs(mem_total))
    user = cgroup_parent / "user"
    cap = memory_cap(mem_total)
    assert (user / "memory.max").read_text().strip() == str(cap // PAGE * PAGE)
    assert (user / "memory.high").read_text().strip() == str(cap // PAGE * PAGE)
    assert (cgroup_parent / "socats" / "memory.min").read_text().strip() == str(5 * MiB)
    if (user / "memory.swap.max").exists():
        (user / "memory.swap.max").write_text("0")  # with swap the hog would page out instead of dying
    hog = spawn_into(manager.procs_path("user"), sys.executable, "-c",
                     "import time; data = b'x' * (512 << 20); time.sleep(30)")
    try:
        assert hog.wait(60) == -signal.SIGKILL
    finally:
        reap(hog)
    events = dict(line.split() for line in (user / "memory.events").read_text().splitlines())
    assert int(events["oom_kill"]) >= 1


# -- the daemon: OOM protection at start-up and the groups through -cgroup-root -------------------------------


def may_lower_oom_score() -> bool:
    """CAP_SYS_RESOURCE (bit 24) is what lowering oom_score_adj takes; containers often drop it even for root."""
    with open("/proc/self/status") as status:
        caps = next(line for line in status if line.startswith("CapEff:"))
    return bool(int(caps.split()[1], 16) >> 24 & 1)


def protect_in_child(uid: int | None) -> tuple[bool, int, list[str]]:
    """protect_daemon() in a forked child (optionally switched to `uid`): (result, oom_score_adj, log lines)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(read_fd)
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            lines: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: lines.append(record.getMessage())
            logging.getLogger("envd").addHandler(handler)
            ok = protect_daemon()
            with open("/proc/self/oom_score_adj") as score:
                os.write(write_fd, json.dumps([ok, int(score.read()), lines]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        data = reader.read()
    assert os.waitpid(pid, 0)[1] == 0
    ok, score, lines = json.loads(data)
    return ok, score, lines


def test_oom_protection_is_set_with_the_capability_and_degrades_without_it() -> None:
    if may_lower_oom_score():
        assert protect_in_child(None) == (True, -1000, [])
    else:
        print("\noom_score_adj -1000 not settable here: root lacks CAP_SYS_RESOURCE")
    for uid in ([] if may_lower_oom_score() else [None]) + [1001]:
        ok, score, lines = protect_in_child(uid)
        assert not ok and score >= 0
        [line] = lines
        assert line.startswith("cannot set oom_score_adj -1000 (needs CAP_SYS_RESOURCE): [Errno 13] Permission denied")


def test_daemon_protects_itself_and_creates_its_groups(tmp_path: Path, cgroup_parent: Path) -> None:
    for start in range(2):  # the second start finds the groups already there
        daemon = start_daemon(tmp_path, "-cgroup-root", str(cgroup_parent))
        try:
            score = Path(f"/proc/{daemon.process.pid}/oom_score_adj").read_text()
            inherited = Path("/proc/self/oom_score_adj").read_text()
            assert score == ("-1000\n" if may_lower_oom_score() else inherited)
            # An RPC answers once the services (and the cgroup manager) are built.
            stat = httpx.post(f"{daemon.url}/filesystem.Filesystem/Stat", json={"path": "/"}, timeout=20)
            assert stat.status_code == 200, stat.text
            assert all((cgroup_parent / name).is_dir() for name in GROUPS)
            # the daemon itself stays where it was started (only its children are placed)
            assert not any(str(daemon.process.pid) in words(cgroup_parent / name / "cgroup.procs")
                           for name in GROUPS)
        finally:
            stop_daemon(daemon)
        assert daemon.process.returncode == 0
    log = (tmp_path / "envd.log").read_text()
    assert "cgroups unavailable" not in log
    assert log.count("cannot set oom_score_adj") == (0 if may_lower_oom_score() else 2)
