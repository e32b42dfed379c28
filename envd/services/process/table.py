"""The process table: live processes by pid, recently ended ones for 30 s, lookup by pid or tag (spec/envd.md §6.1)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ...auth.users import User
from ...host.cgroups import CgroupManager, NoCgroups
from ...errors import InvalidArgument, NotFound
from ...paths import PathError, resolve_path
from ...state import SandboxState
from .exit_status import ExitStatus
from .fanout import Subscriber
from .process import ProcessConfig, ProcessHandle
from .spawn import Child, Spawner, SpawnSpec, TerminalSize, environment

log = logging.getLogger("envd.process")

RETAIN_SECONDS = 30.0  # §6.1
SYSTEM_TAG = "_system"  # §6.1: stays in envd's cgroup
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class StartOptions:
    config: ProcessConfig
    user: User
    pty: TerminalSize | None = None
    tag: str | None = None
    stdin: bool = True  # §6.3: absent means true; ignored for a PTY
    lifetime: float | None = None  # seconds (§6.6); None = unlimited


@dataclass(frozen=True)
class Ended:
    """A retained exit (§6.1): enough for a late Connect to answer start + end."""

    pid: int
    tag: str | None
    status: ExitStatus


def _not_found(pid: int | None, tag: str | None) -> NotFound:
    if pid is not None:
        return NotFound(f"process with pid {pid} not found")
    return NotFound(f"process with tag {tag} not found")


class ProcessTable:
    def __init__(
        self,
        state: SandboxState,
        cgroups: CgroupManager | None = None,
        search_path: str | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self._state = state
        self._cgroups = cgroups or NoCgroups()
        self._path = search_path if search_path is not None else os.environ.get("PATH", DEFAULT_PATH)
        self._spawner = spawner or Spawner()
        self._live: dict[int, ProcessHandle] = {}
        self._ended: dict[int, tuple[Ended, asyncio.TimerHandle]] = {}

    # -- start --------------------------------------------------------------------------------------

    async def start(self, options: StartOptions) -> tuple[ProcessHandle, Subscriber[ExitStatus]]:
        """Spawn and register a process; the returned subscriber was in place before any output was read."""
        user, config = options.user, options.config
        try:
            cwd = resolve_path(config.cwd or "", user.home, user.name, self._state.default_workdir)
        except PathError as err:
            raise InvalidArgument(str(err)) from None
        procs = None
        if options.tag != SYSTEM_TAG:
            procs = self._cgroups.procs_path("pty" if options.pty is not None else "user")
        spec = SpawnSpec(
            argv=None,  # the spawner builds the §6.3 command line
            env=environment(self._path, user.home, user.name, self._state.envs.all(), config.envs),
            cwd=cwd,
            uid=user.uid,
            gid=user.gid,
            groups=None,
            username=user.name,
            pty=options.pty,
            stdin=options.stdin,
            cgroup_procs=procs,
            search_path=self._path,
            cmd=config.cmd,
            args=list(config.args),
        )
        # Once spawned, registration follows synchronously: a caller cancelled mid-way cannot orphan a child.
        child = await self._spawner.spawn(spec)
        handle = self._register(child, options)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("process started", extra={"fields": {"pid": handle.pid, "cmd": config.cmd, "user": user.name,
                                                           "tag": options.tag, "pty": options.pty is not None}})
        subscriber = handle.subscribe()
        handle.start(options.lifetime)
        return handle, subscriber

    def _register(self, child: Child, options: StartOptions) -> ProcessHandle:
        handle = ProcessHandle(child, options.config, options.tag, on_end=self._on_end)
        # §6.1: a new process evicts retained exits with its pid and with its tag.
        self._forget(handle.pid)
        if options.tag is not None:
            for pid in [pid for pid, (ended, _) in self._ended.items() if ended.tag == options.tag]:
                self._forget(pid)
        self._live[handle.pid] = handle
        return handle

    def _on_end(self, handle: ProcessHandle) -> None:
        if self._live.get(handle.pid) is handle:
            del self._live[handle.pid]
        assert handle.returncode is not None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("process ended", extra={"fields": {"pid": handle.pid, "status": handle.returncode.status}})
        ended = Ended(handle.pid, handle.tag, handle.returncode)
        self._forget(handle.pid)
        timer = asyncio.get_running_loop().call_later(RETAIN_SECONDS, self._expire, ended)
        self._ended[handle.pid] = (ended, timer)

    def _expire(self, ended: Ended) -> None:
        entry = self._ended.get(ended.pid)
        if entry is not None and entry[0] is ended:
            del self._ended[ended.pid]

    def _forget(self, pid: int) -> None:
        entry = self._ended.pop(pid, None)
        if entry is not None:
            entry[1].cancel()

    # -- lookup -------------------------------------------------------------------------------------

    def get(self, pid: int | None = None, tag: str | None = None) -> ProcessHandle:
        """A live process by pid or by tag (§6.12: any live process carrying it), else not_found."""
        if pid is not None:
            handle = self._live.get(pid)
        else:
            handle = next((h for h in self._live.values() if h.tag is not None and h.tag == tag), None)
        if handle is None:
            raise _not_found(pid, tag)
        return handle

    def find(self, pid: int | None = None, tag: str | None = None) -> ProcessHandle | Ended:
        """A live process, else an exit retained for 30 s (§6.7), else not_found."""
        try:
            return self.get(pid, tag)
        except NotFound:
            pass
        if pid is not None:
            entry = self._ended.get(pid)
        else:
            entry = next((e for e in self._ended.values() if e[0].tag == tag), None)
        if entry is None:
            raise _not_found(pid, tag)
        return entry[0]

    def __iter__(self) -> Iterator[ProcessHandle]:
        return iter(list(self._live.values()))

    def __len__(self) -> int:
        return len(self._live)

    # -- live upgrade (§3.12) -------------------------------------------------------------------------

    def export_handover(self) -> tuple[list[dict], list[int]]:
        entries = [handle.handover() for handle in self._live.values()]
        fds = [fd for entry in entries for fd in entry["fds"].values() if fd is not None]
        return entries, fds

    def adopt(self, entries: list[dict]) -> tuple[int, int]:
        """Re-adopt the processes of the previous envd and start reading their output: (adopted, failed)."""
        adopted = failed = 0
        for entry in entries:
            try:
                handle = ProcessHandle.adopt(entry, on_end=self._on_end)
            except (OSError, KeyError, TypeError) as err:
                log.warning("process %s not adopted: %s", entry.get("pid"), err)
                failed += 1
                continue
            self._live[handle.pid] = handle
            handle.start(entry.get("lifetime"))
            adopted += 1
        return adopted, failed

    async def close(self) -> None:
        """Daemon shutdown: stop reading and close every fd; the children themselves keep running."""
        for handle in list(self._live.values()):
            handle.detach()
        self._live.clear()
        for _ended, timer in self._ended.values():
            timer.cancel()
        self._ended.clear()
        self._spawner.close()
