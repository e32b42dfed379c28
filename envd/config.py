"""The one configuration object: every flag lands here once at start-up and is passed down."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    port: int = 49983
    host: str = "0.0.0.0"
    # Local mode (-isnotfc): no MMDS, E2B_SANDBOX=false (spec/envd.md §1.2).
    is_not_fc: bool = False
    verbose: bool = False
    # Firecracker metadata service (spec/envd.md §8.1); tests point it at a loopback stand-in.
    mmds_address: str = "http://169.254.169.254"
    cgroup_root: str = "/sys/fs/cgroup"
    no_cgroups: bool = False
    # FIFREEZE target of /fsfreeze (§3.9): None = `/` in the VM, nothing in local mode (never the dev machine's).
    fsfreeze_path: str | None = None
    # Where loopback-only listeners are made reachable (§8.3).
    port_forward_address: str = "169.254.0.21"
    # Set by an outgoing envd when it re-execs itself for a live upgrade (§3.12).
    resume_handover: bool = False
    # Local runs only: the default user/workdir before any /init sets them (upstream: root / unset).
    default_user: str = "root"
    default_workdir: str | None = None
    run_dir: str = "/run/e2b"
    # Largest RPC message accepted; bigger bodies get resource_exhausted instead of filling memory.
    rpc_read_max_bytes: int = 64 * 1024 * 1024
    # The code-interpreter HTTP API (code-interpreter.md §1); 0 disables it.
    code_port: int = 49999
    # Venv holding the kernels and their kernelspecs (`make kernels`).
    kernels_prefix: str = "/opt/envd-kernels"
