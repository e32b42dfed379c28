"""Command line: Go-style flags as upstream (spec/envd.md §1.2) plus local-run defaults."""

from __future__ import annotations

import argparse
import asyncio
import pwd
import sys

from . import ENVD_VERSION
from .config import Config


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="envd", description="sandbox guest agent", allow_abbrev=False)

    def flag(name: str, **kwargs) -> None:
        # Go flags: -name and --name alike; booleans as -name or -name=true.
        parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)

    def bool_flag(name: str, help: str) -> None:
        flag(name, type=_bool, nargs="?", const=True, default=False, help=help)

    flag("port", type=int, default=49983, help="TCP port of the listener (default 49983)")
    bool_flag("isnotfc", "local mode: not running inside a Firecracker VM")
    bool_flag("version", "print the envd contract version and exit")
    bool_flag("commit", "print the build commit and exit")
    bool_flag("verbose", "debug logging")
    flag("cgroup-root", default="/sys/fs/cgroup", help="cgroup v2 mount point")
    bool_flag("no-cgroups", "skip cgroup management")
    flag("fsfreeze-path", default=None, help="filesystem /fsfreeze freezes (default / in the VM, none locally)")
    bool_flag("resume-handover", "internal: resume from a live-upgrade handover")
    flag("port-forward-address", default="169.254.0.21",
         help="address loopback-only listeners are forwarded to (default 169.254.0.21)")
    flag("default-user", default=None, help="default user before /init sets one (local runs)")
    flag("default-workdir", default=None, help="default workdir before /init sets one (local runs)")
    flag("host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    flag("run-dir", default="/run/e2b", help="sandbox metadata directory (default /run/e2b)")
    flag("code-port", type=int, default=49999, help="code-interpreter HTTP port (default 49999, 0 disables)")
    flag("mmds-address", default="http://169.254.169.254", help="metadata service URL (FC mode)")
    flag("kernels-prefix", default="/opt/envd-kernels", help="venv with the Jupyter kernels (make kernels)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        port=args.port,
        host=args.host,
        is_not_fc=args.isnotfc,
        verbose=args.verbose,
        cgroup_root=args.cgroup_root,
        no_cgroups=args.no_cgroups,
        fsfreeze_path=args.fsfreeze_path,
        port_forward_address=args.port_forward_address,
        resume_handover=args.resume_handover,
        default_user=args.default_user or "root",
        default_workdir=args.default_workdir,
        run_dir=args.run_dir,
        code_port=args.code_port,
        kernels_prefix=args.kernels_prefix,
        mmds_address=args.mmds_address,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["platform"]:  # the local control plane for envd microVMs (envd/platform/cli.py)
        from .platform.cli import main as platform_main

        platform_main(argv[1:])
        return
    args = parse_args(argv)
    if args.version:
        print(ENVD_VERSION)
        return
    if args.commit:
        print("")
        return
    config = config_from_args(args)
    if args.default_user:
        try:
            pwd.getpwnam(args.default_user)
        except KeyError:
            print(f"envd: default user {args.default_user!r} does not exist", file=sys.stderr)
            sys.exit(2)
    from .logs import setup_logging
    from .server import serve

    setup_logging(config.verbose)
    try:
        asyncio.run(serve(config))
    except OSError as err:
        print(f"server stopped: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
