"""The host-integration pieces for this run (spec/envd.md §8), each implementation chosen once at start-up:
the real one where the machine has what it needs, a no-op (logged once) where it does not."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..config import Config
from .ca_bundle import CABundleInstaller
from .cgroups import WORKLOAD_KINDS, CgroupManager, create_cgroup_manager
from .clock import NoClock, SystemClock
from .entropy import KernelEntropy, NoEntropy
from .freezer import Freezer
from .handover import Handover, Part
from .fsfreeze import FilesystemFreezer, Fsfreeze, NoFsfreeze
from .ports import NoPortForwarder, PortForwarder, create_port_forwarder
from .volumes import VolumeMounter

log = logging.getLogger("envd")


@dataclass
class Host:
    cgroups: CgroupManager
    freezer: Freezer
    fsfreeze: FilesystemFreezer
    ports: PortForwarder | NoPortForwarder
    volumes: VolumeMounter
    ca_bundle: CABundleInstaller
    clock: SystemClock | NoClock
    entropy: KernelEntropy | NoEntropy
    handover: Handover

    def start(self) -> None:
        """Background work that needs the running loop (§1.3 step 10: the port scanner)."""
        self.ports.start()

    async def close(self) -> None:
        await self.freezer.close()
        await self.ports.close()


def freeze_whole_tree(config: Config) -> bool:
    """§3.11 walks the whole cgroup tree (`hierarchy`, the thaw). In the VM every cgroup is the sandbox's; a
    local run leaves the machine's other cgroups alone unless it was given a cgroup root of its own."""
    whole = not config.is_not_fc or config.cgroup_root != Config.cgroup_root
    if not whole:
        log.info("local mode: freeze/thaw confined to envd's own groups (pass -cgroup-root to use a whole tree)")
    return whole


def build_host(config: Config) -> Host:
    cgroups = create_cgroup_manager(config)
    workload = [path for kind in WORKLOAD_KINDS if (path := cgroups.group_path(kind)) is not None]
    root = getattr(cgroups, "root", None)
    # In the VM the root filesystem; a local run freezes only a filesystem it was explicitly given.
    fs_target = config.fsfreeze_path or (None if config.is_not_fc else "/")
    freezer = Freezer(root, workload, whole_tree=root is None or freeze_whole_tree(config))
    ports = create_port_forwarder(config.port_forward_address, cgroups.procs_path("socat"))
    volumes = VolumeMounter()
    handover = Handover(config.run_dir, freezer)
    # §3.12: what the host pieces carry across a live upgrade (the process service registers its own part).
    handover.register("mounts", Part(export=lambda: (dict(volumes.ledger), []), adopt=volumes.adopt))
    handover.register("guest_frozen", Part(export=lambda: (sorted(freezer.guest_frozen), []),
                                           adopt=freezer.adopt_guest_frozen))
    handover.before_exec.append(ports.close)  # forwards are started again by the new envd's first scan
    handover.after_abort.append(ports.start)
    return Host(
        cgroups=cgroups,
        freezer=freezer,
        fsfreeze=Fsfreeze(fs_target) if fs_target else NoFsfreeze(),
        ports=ports,
        volumes=volumes,
        ca_bundle=CABundleInstaller(),
        clock=NoClock() if config.is_not_fc else SystemClock(),
        entropy=NoEntropy() if config.is_not_fc else KernelEntropy(),
        handover=handover,
    )
