"""NFS volume mounts from /init `volumeMounts` (spec/envd.md §8.8).

A ledger path -> lifecycle ID says what is mounted for which sandbox lifecycle: a repeated /init with the
same lifecycle ID leaves a volume alone, a new one (a resume) remounts it. Mount work runs as child processes
(findmnt, umount, mount) so nothing blocks the event loop; the whole run is capped at 10 s, not cancelled by
the caller leaving, and the first failure cancels the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from ..errors import InvalidArgument

log = logging.getLogger("envd")

BUDGET_S = 10.0
LAZY_UMOUNT_S = 2.0
NFS_OPTIONS = ("fg,hard,sync,rsize=1048576,wsize=1048576,mountproto=tcp,mountport=2049,proto=tcp,port=2049,"
               "nfsvers=3,noacl,noac,lookupcache=none")


@dataclass(frozen=True)
class Volume:
    nfs_target: str
    path: str


def parse_volumes(value: object) -> list[Volume]:
    """`volumeMounts` of /init: an array of {"nfs_target": str, "path": str}, both required and non-empty."""
    if not isinstance(value, list):
        raise InvalidArgument("volumeMounts must be an array")
    volumes = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidArgument(f"volumeMounts[{index}] must be an object")
        target, path = item.get("nfs_target"), item.get("path")
        if not isinstance(target, str) or not target:
            raise InvalidArgument(f"volumeMounts[{index}].nfs_target must be a non-empty string")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidArgument(f"volumeMounts[{index}].path must be an absolute path")
        volumes.append(Volume(nfs_target=target, path=path))
    return volumes


def mount_argv(volume: Volume, mount: str = "mount") -> list[str]:
    return [mount, "-v", "-t", "nfs", "-o", NFS_OPTIONS, volume.nfs_target, volume.path]


class MountError(Exception):
    pass


async def _run(argv: list[str], timeout: float | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, output.decode(errors="replace").strip()


class VolumeMounter:
    """The ledger and the mount runs. `mount` names the mount program (a stand-in in tests where the kernel
    has no NFS client)."""

    def __init__(self, mount: str = "mount", budget_s: float = BUDGET_S) -> None:
        self.mount = mount
        self.budget_s = budget_s
        self.ledger: dict[str, str] = {}  # path -> lifecycle ID it was mounted for
        self._running = False

    def adopt(self, ledger: dict[str, str]) -> tuple[int, int]:
        """Live upgrade (§3.12): what the previous envd mounted stays mounted and recorded."""
        self.ledger.update(ledger)
        return len(ledger), 0

    async def setup(self, volumes: list[Volume], lifecycle_id: str | None) -> None:
        """Mount what the ledger does not already hold for this lifecycle. Raises MountError."""
        if self._running:
            log.info("volume mounts already in progress: skipped")
            return
        lifecycle = lifecycle_id or ""
        todo = [v for v in volumes if self.ledger.get(v.path) != lifecycle]
        if not todo:
            return
        self._running = True
        # A task of its own: the caller leaving does not stop a half-done mount run.
        run = asyncio.ensure_future(self._mount_all(todo, lifecycle))
        try:
            await asyncio.shield(run)
        finally:
            if run.done():
                self._running = False
            else:
                run.add_done_callback(lambda _: setattr(self, "_running", False))

    async def _mount_all(self, volumes: list[Volume], lifecycle: str) -> None:
        tasks = [asyncio.ensure_future(self._mount_one(v, lifecycle)) for v in volumes]
        try:
            done, pending = await asyncio.wait(tasks, timeout=self.budget_s, return_when=asyncio.FIRST_EXCEPTION)
            failed = next((t for t in done if t.exception() is not None), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
            if pending:
                raise MountError(f"volume mounts did not finish within {self.budget_s:.0f} s")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _mount_one(self, volume: Volume, lifecycle: str) -> None:
        await self._unmount(volume.path)
        self.ledger.pop(volume.path, None)
        await asyncio.to_thread(os.makedirs, volume.path, exist_ok=True)
        argv = mount_argv(volume, self.mount)
        code, output = await _run(argv)
        if code != 0:
            raise MountError(f"{' '.join(argv)}: exit status {code}: {output}")
        self.ledger[volume.path] = lifecycle
        log.info("volume mounted", extra={"fields": {"path": volume.path, "target": volume.nfs_target}})

    async def _unmount(self, path: str) -> None:
        code, source = await _run(["findmnt", "--noheadings", "--output", "SOURCE", path])
        if code == 1 or not source:
            return  # nothing mounted there
        code, output = await _run(["umount", "--force", path])
        if code == 0:
            return
        try:
            code, output = await _run(["umount", "--lazy", path], timeout=LAZY_UMOUNT_S)
        except asyncio.TimeoutError:
            raise MountError(f"umount --lazy {path}: no answer within {LAZY_UMOUNT_S:.0f} s") from None
        if code != 0:
            raise MountError(f"umount --lazy {path}: exit status {code}: {output}")
