"""Live self-upgrade: re-exec envd in place (same pid) with the workload kept alive (spec/envd.md §3.12).

Not upstream's protobuf blob (a port need not interoperate with it): the outgoing envd writes a JSON file
under the run dir naming what it carries, marks the fds it hands over inheritable (everything else
close-on-exec: hypercorn's listening sockets are inheritable), and execs the same command line plus
`-resume-handover`. Children stay children across an exec, so the incoming envd reopens pidfds, re-adopts
the processes with their pipes/terminals, and reaps them as before.

Carried: processes (pid, tag, config, I/O fds, remaining lifetime), the NFS ledger, guest-frozen cgroups.
Not carried, and why: watchers (inotify state; clients re-create them on the error), exits retained for
late Connects, port forwards (socats are stopped; the first scan of the new envd starts them again), and
other children (code kernels: stopped and reaped; the code port starts fresh ones).

Owners register a part (`export` returning JSON-able data + fds to keep, `adopt` taking the data back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FailedPrecondition, Internal
from .freezer import Freezer

log = logging.getLogger("envd")

FILE_NAME = "envd-handover.json"
SCHEMA = 1
FREEZE_WAIT_MS = 2000  # §3.12: the workload must stop within 2 s
FALLBACK_THAW_S = 60.0  # §3.12: thaw by itself when no /init arrives after the upgrade


@dataclass
class Part:
    export: Callable[[], tuple[object, list[int]]]
    adopt: Callable[[object], tuple[int, int]]  # -> (adopted, failed)


@dataclass
class Report:
    """X-Envd-Handover on the first /init after an upgrade."""

    failed: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {
        "procs": 0, "procs_failed": 0, "retained": 0, "retained_failed": 0, "watchers": 0, "watchers_failed": 0})

    def to_json(self) -> dict:
        return {"failed": self.failed, **self.counts}


def _close_on_exec_except(keep: set[int]) -> None:
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd <= 2:
            continue
        try:
            os.set_inheritable(fd, fd in keep)
        except OSError:
            pass  # the listing's own fd, already closed


def _stop_other_children(carried: set[int]) -> None:
    """Children that are not handed over would be nobody's after the exec: stop and reap them."""
    import psutil

    for child in psutil.Process().children():
        if child.pid in carried:
            continue
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class Handover:
    def __init__(self, run_dir: str, freezer: Freezer, argv: list[str] | None = None) -> None:
        self.path = Path(run_dir) / FILE_NAME
        self.freezer = freezer
        self.argv = argv if argv is not None else list(sys.orig_argv)
        self.parts: dict[str, Part] = {}
        self.incoming: dict | None = None  # what the previous envd handed over (resumed runs)
        self.report: Report | None = None  # pending for the next /init
        self.before_exec: list[Callable[[], Awaitable[None]]] = []
        self.after_abort: list[Callable[[], None]] = []  # undo before_exec when the exec did not happen
        self._fallback: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()

    def register(self, name: str, part: Part) -> None:
        self.parts[name] = part
        if self.incoming is not None and name in self.incoming.get("parts", {}):
            self._adopt(name, part, self.incoming["parts"][name])

    # -- the incoming side -----------------------------------------------------------------------------

    def resume(self) -> bool:
        """Read (and remove) the handover file; parts adopt their data as they register. False: nothing to resume."""
        try:
            data = json.loads(self.path.read_text())
            self.path.unlink()
        except (OSError, ValueError) as err:
            log.error("cannot resume from %s: %s", self.path, err)
            self.report = Report(failed=True)
            return False
        if data.get("schema") != SCHEMA:
            log.error("handover schema %r not understood", data.get("schema"))
            self.report = Report(failed=True)
            return False
        self.incoming = data
        self.report = Report()
        for name, part in self.parts.items():
            if name in data.get("parts", {}):
                self._adopt(name, part, data["parts"][name])
        log.info("resumed from a live upgrade", extra={"fields": {"from_pid": data.get("pid")}})
        return True

    def _adopt(self, name: str, part: Part, data: object) -> None:
        assert self.report is not None
        try:
            adopted, failed = part.adopt(data)
        except Exception:
            log.exception("handover part %s not adopted", name)
            adopted, failed = 0, len(data) if isinstance(data, list) else 1
            self.report.failed = True
        if name == "processes":
            self.report.counts["procs"] += adopted
            self.report.counts["procs_failed"] += failed

    def arm_fallback_thaw(self) -> None:
        """§3.12: the workload stays frozen until the next /init, at most FALLBACK_THAW_S."""
        loop = asyncio.get_running_loop()
        self._fallback = loop.call_later(FALLBACK_THAW_S, lambda: asyncio.ensure_future(self.freezer.thaw()))

    def header(self) -> str | None:
        """X-Envd-Handover for every /init answer of an envd that booted from a handover (§3.4.2 step 1)."""
        if self.report is None:
            return None
        return json.dumps(self.report.to_json(), separators=(",", ":"))

    def initialized(self) -> None:
        """The first authenticated /init thawed the workload: the fallback thaw is no longer wanted."""
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None

    # -- the outgoing side -----------------------------------------------------------------------------

    async def upgrade(self) -> None:
        """Freeze, hand over, exec. Returns only by raising (the old envd keeps serving)."""
        if self._lock.locked():
            raise FailedPrecondition("an upgrade is already in progress")
        if not os.access(sys.executable, os.X_OK):
            raise Internal(f"live upgrade impossible: {sys.executable} is not executable")
        async with self._lock:
            frozen = await self.freezer.freeze("legacy", 0, FREEZE_WAIT_MS)
            if frozen.not_frozen or frozen.failed or frozen.unobservable:
                await self.freezer.thaw()
                raise Internal(f"workload did not freeze within {FREEZE_WAIT_MS} ms "
                               f"({frozen.not_frozen} not frozen, {frozen.failed} failed)")
            keep: set[int] = set()
            hooks_ran = False
            try:
                keep, carried = self._write()
                hooks_ran = True
                for hook in self.before_exec:
                    await hook()
                _stop_other_children(carried)
                _close_on_exec_except(keep)
                # The same interpreter and arguments (`-m envd ...` or the console script), plus the flag.
                argv = [sys.executable, *(a for a in self.argv[1:] if a not in ("-resume-handover",
                                                                                "--resume-handover"))]
                log.info("re-executing for a live upgrade", extra={"fields": {"argv": argv}})
                for handler in logging.getLogger().handlers:
                    handler.flush()
                os.execv(sys.executable, [*argv, "-resume-handover"])
            except Exception as err:
                # Still the old envd: undo and keep serving.
                for fd in keep:
                    try:
                        os.set_inheritable(fd, False)
                    except OSError:
                        pass
                self.path.unlink(missing_ok=True)
                if hooks_ran:
                    for undo in self.after_abort:
                        undo()
                await self.freezer.thaw()
                raise Internal(f"live upgrade failed: {err}") from err

    def _write(self) -> tuple[set[int], set[int]]:
        parts: dict[str, object] = {}
        keep: set[int] = set()
        for name, part in self.parts.items():
            data, fds = part.export()
            parts[name] = data
            keep.update(fds)
        carried = {entry["pid"] for entry in parts.get("processes", [])}  # type: ignore[union-attr]
        blob = {"schema": SCHEMA, "pid": os.getpid(), "parts": parts}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(blob, out)
        os.rename(tmp, self.path)
        return keep, carried
