"""cgroup v2 groups for user processes (spec/envd.md §8.9), behind a tiny interface chosen once at start-up.

The process service asks `procs_path(kind)` for the `cgroup.procs` file its child writes "0" into between
fork and exec (§12: placed at spawn, never running in envd's cgroup first). `None` means "not placed": the
child stays in envd's cgroup. That is the no-op manager's answer, used with `-no-cgroups`, when the root is
not a cgroup v2 filesystem, or when the groups cannot be created.

Kinds: "user" (pipe processes, group `user`), "pty" (terminals, group `ptys`), "socat" (port forwards,
group `socats`). The later freeze/thaw (§3.11) finds the workload groups through `group_path`.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..config import Config
from .statfs import CGROUP2_SUPER_MAGIC, fs_magic

log = logging.getLogger("envd")

MiB = 1024 * 1024

KIND_GROUPS = {"user": "user", "pty": "ptys", "socat": "socats"}
WORKLOAD_KINDS = ("user", "pty")  # §3.11: the `legacy` freeze covers these two

# Controllers the properties below need, enabled in the root's cgroup.subtree_control.
CONTROLLERS = ("cpu", "io", "memory")


@dataclass(frozen=True)
class GroupSpec:
    name: str
    properties: tuple[tuple[str, str], ...]  # (file, value), written in this order


def memory_cap(mem_total: int) -> int:
    """§8.9: MemTotal − min(MemTotal/8, 128 MiB), for both memory.high and memory.max."""
    return mem_total - min(mem_total // 8, 128 * MiB)


def group_specs(mem_total: int) -> tuple[GroupSpec, ...]:
    """The table of §8.9."""
    cap = str(memory_cap(mem_total))
    return (
        GroupSpec("user", (("cpu.weight", "50"), ("io.weight", "default 10"),
                           ("memory.high", cap), ("memory.max", cap))),
        GroupSpec("ptys", (("cpu.weight", "200"), ("io.weight", "default 50"),
                           ("memory.high", cap), ("memory.max", cap))),
        GroupSpec("socats", (("cpu.weight", "150"), ("io.weight", "default 50"),
                             ("memory.min", str(5 * MiB)), ("memory.low", str(8 * MiB)))),
    )


def read_mem_total(meminfo: str = "/proc/meminfo") -> int:
    with open(meminfo) as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    raise ValueError(f"no MemTotal in {meminfo}")


def _group(kind: str) -> str:
    try:
        return KIND_GROUPS[kind]
    except KeyError:
        raise ValueError(f"unknown cgroup kind {kind!r} (expected one of {', '.join(KIND_GROUPS)})") from None


class CgroupManager(Protocol):
    def procs_path(self, kind: str) -> str | None: ...

    def group_path(self, kind: str) -> str | None: ...


class NoCgroups:
    """Children stay in envd's cgroup; freeze/thaw will have nothing to do."""

    root: str | None = None

    def procs_path(self, kind: str) -> str | None:
        _group(kind)  # an unknown kind is a caller bug on every machine, not only where cgroups work
        return None

    def group_path(self, kind: str) -> str | None:
        _group(kind)
        return None


class Cgroups:
    """The managed groups under a cgroup v2 root (they exist once this is built)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def group_path(self, kind: str) -> str:
        return os.path.join(self.root, _group(kind))

    def procs_path(self, kind: str) -> str:
        return os.path.join(self.group_path(kind), "cgroup.procs")


class NotCgroup2(OSError):
    pass


def _read_words(path: str) -> list[str]:
    with open(path) as f:
        return f.read().split()


def write_value(path: str, value: str) -> None:
    # One write(2) per value: cgroup files parse each write on its own.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def enable_controllers(root: str, wanted: Iterable[str]) -> list[str]:
    """Enable each wanted controller in root's cgroup.subtree_control that the kernel allows; return them.

    One write per controller, so one refusal does not block the others. A non-root cgroup holding
    processes of its own cannot hand domain controllers to children ("no internal processes", EBUSY);
    the root cgroup is exempt. Everything not enabled is named in one log line.
    """
    subtree = os.path.join(root, "cgroup.subtree_control")
    available = set(_read_words(os.path.join(root, "cgroup.controllers")))
    active = set(_read_words(subtree))
    enabled: list[str] = []
    unavailable: list[str] = []
    skipped: list[str] = []
    for controller in wanted:
        if controller in active:
            enabled.append(controller)
            continue
        if controller not in available:
            unavailable.append(controller)
            continue
        try:
            write_value(subtree, f"+{controller}")
        except OSError as err:
            if err.errno == errno.EBUSY:
                skipped.append(f"{controller} ({root} holds processes of its own: no internal processes rule)")
            else:
                skipped.append(f"{controller} ({os.strerror(err.errno or 0)})")
            continue
        enabled.append(controller)
    if unavailable:
        skipped.insert(0, f"{', '.join(unavailable)} (not in {root}/cgroup.controllers)")
    if skipped:
        log.warning("cgroup controllers not enabled under %s: %s; their properties will be skipped",
                    root, "; ".join(skipped))
    return enabled


def write_property(group: str, name: str, value: str) -> bool:
    """Write one property; a missing or unwritable file (controller not enabled) is skipped with a log line."""
    path = os.path.join(group, name)
    try:
        write_value(path, value)
    except OSError as err:
        reason = "missing: controller not enabled" if err.errno == errno.ENOENT else os.strerror(err.errno or 0)
        log.warning("cgroup property %s not set (%s)", path, reason)
        return False
    return True


def setup_cgroups(
    root: str,
    *,
    controllers: Iterable[str] = CONTROLLERS,
    specs: Iterable[GroupSpec] | None = None,
) -> Cgroups:
    """Check the root, enable controllers, create the groups (idempotent) and write their properties.

    Raises OSError (NotCgroup2 for a root of another filesystem type) or ValueError; properties never fail it.
    """
    magic = fs_magic(root)
    if magic != CGROUP2_SUPER_MAGIC:
        raise NotCgroup2(f"{root} is not a cgroup v2 filesystem (statfs magic {magic:#x})")
    enable_controllers(root, controllers)
    for spec in group_specs(read_mem_total()) if specs is None else specs:
        group = os.path.join(root, spec.name)
        try:
            os.mkdir(group, 0o755)
        except FileExistsError:
            pass  # a restarted daemon reuses its groups (and rewrites their properties)
        for name, value in spec.properties:
            write_property(group, name, value)
    return Cgroups(root)


def create_cgroup_manager(config: Config) -> CgroupManager:
    """The manager for this run; any failure gives the no-op manager and one log line. Never raises."""
    if config.no_cgroups:
        log.info("cgroup management disabled (-no-cgroups): processes stay in envd's cgroup")
        return NoCgroups()
    try:
        return setup_cgroups(config.cgroup_root)
    except (OSError, ValueError) as err:
        log.warning("cgroups unavailable, processes stay in envd's cgroup: %s", err)
    except Exception:  # a host quirk must never keep the daemon from serving
        log.exception("cgroups unavailable, processes stay in envd's cgroup")
    return NoCgroups()
