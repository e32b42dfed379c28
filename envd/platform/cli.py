"""`envd platform`: serve the control-plane API and the sandbox routing proxy until SIGTERM/SIGINT.

    envd platform [--port 3000] [--proxy-port 3001] [--api-key KEY ...] [--images build/vm] [--state build/platform]

Then point an unmodified SDK at it (no E2B_DEBUG):
    E2B_API_URL=http://127.0.0.1:3000 E2B_SANDBOX_URL=http://127.0.0.1:3001 E2B_API_KEY=<key>
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from ..server import port_unavailable
from .api import Api
from .proxy import Proxy
from .qemu import host_tsc_khz, kvm_usable
from .sandboxes import Manager
from .templates import Template

log = logging.getLogger("envd.platform")

ROOT = Path(__file__).resolve().parent.parent.parent
# name -> (image flavour, aliases, guest MiB). `code-interpreter-v1` is e2b_code_interpreter's default template.
TEMPLATES = {
    "base": ("base", (), 512),
    "code-interpreter": ("code-interpreter", ("code-interpreter-v1",), 1024),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="envd platform", description="local E2B-compatible sandbox platform")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="API port: E2B_API_URL (default 3000)")
    parser.add_argument("--proxy-port", type=int, default=3001, help="sandbox proxy port: E2B_SANDBOX_URL "
                        "(default 3001)")
    parser.add_argument("--api-key", action="append", default=[],
                        help="accepted X-API-KEY (repeatable; also $ENVD_PLATFORM_API_KEYS, comma separated; "
                             "default: a random key, printed)")
    parser.add_argument("--images", type=Path, default=ROOT / "build" / "vm",
                        help="built images, one directory per flavour (default build/vm: make rootfs)")
    parser.add_argument("--state", type=Path, default=ROOT / "build" / "platform",
                        help="saved templates and sandbox disks (default build/platform)")
    parser.add_argument("--templates", default="base,code-interpreter", help="templates to serve")
    parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    parser.add_argument("--pool", type=int, default=1, help="parked warm VMs per template (default 1; 0 = none)")
    parser.add_argument("--max-sandboxes", type=int, default=16, help="running sandboxes at once (default 16)")
    parser.add_argument("--memory-reserve", type=int, default=1024,
                        help="host MiB that must stay available after a create (default 1024)")
    parser.add_argument("--boot-timeout", type=float, default=300, help="seconds for a template's cold boot")
    parser.add_argument("--metrics-interval", type=float, default=5, help="seconds between metric samples")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def lock_state(state: Path) -> int:
    """One platform per state directory: a second one would reclaim (kill) the first one's VMs."""
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"envd platform: another platform is using {state}") from None
    return fd


def qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("envd platform: qemu-system-x86_64 not found (make platform installs it)") from None
    return out.stdout.splitlines()[0]


async def serve(args: argparse.Namespace, api_keys: list[str]) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config as HypercornConfig

    from .. import hypercorn_eof_fix

    hypercorn_eof_fix.apply()
    version = qemu_version()
    accel = ("kvm" if kvm_usable() else "tcg") if args.accel == "auto" else args.accel
    state = args.state.resolve()
    templates = {}
    for name in filter(None, args.templates.split(",")):
        if name not in TEMPLATES:
            raise SystemExit(f"envd platform: unknown template {name!r} ({', '.join(TEMPLATES)})")
        flavour, aliases, memory = TEMPLATES[name]
        templates[name] = Template(name=name, flavour=flavour, image_dir=args.images.resolve() / flavour,
                                   snap_dir=state / "templates" / name, memory_mib=memory, cpus=2, accel=accel,
                                   tsc_khz=host_tsc_khz(), aliases=aliases)
    manager = Manager(state, templates, max_sandboxes=args.max_sandboxes, pool_size=args.pool,
                      memory_reserve_mib=args.memory_reserve, metrics_interval_s=args.metrics_interval)
    if killed := manager.reclaim():
        log.warning("reclaimed %d QEMU process(es) left by a previous run", killed)
    # get_host(port) -> "<port>-<id>.localhost:<proxy port>", routed by Host (proxy.py).
    api = Api(manager, api_keys, domain=f"localhost:{args.proxy_port}")
    proxy = Proxy(manager)
    for template in templates.values():
        manager.spawn(template.prepare(manager.http, version, args.boot_timeout))
    manager.start()

    async def dispatch(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        server = scope.get("server")
        await (proxy if server and server[1] == args.proxy_port else api)(scope, receive, send)

    hc = HypercornConfig()
    hc.bind = [f"{args.host}:{args.port}", f"{args.host}:{args.proxy_port}"]
    hc.keep_alive_timeout = 640
    hc.keep_alive_max_requests = 1_000_000
    hc.include_server_header = False
    hc.accesslog = logging.getLogger("hypercorn.access") if args.verbose else None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"envd platform: API http://{args.host}:{args.port} (E2B_API_URL), sandboxes "
          f"http://{args.host}:{args.proxy_port} (E2B_SANDBOX_URL), accelerator {accel}, state {state}",
          flush=True)
    try:
        await hypercorn_serve(dispatch, hc, shutdown_trigger=stop.wait)
    finally:
        await manager.close()
        await proxy.close()
        log.info("platform stopped: all VMs ended")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for port in (args.port, args.proxy_port):
        if problem := port_unavailable(args.host, port):
            raise SystemExit(f"envd platform: port {port} unavailable ({problem})")
    keys = [*args.api_key, *filter(None, os.environ.get("ENVD_PLATFORM_API_KEYS", "").split(","))]
    if not keys:
        keys = ["e2b_" + secrets.token_hex(20)]
        print(f"envd platform: API key {keys[0]} (E2B_API_KEY)", flush=True)
    lock = lock_state(args.state)
    try:
        asyncio.run(serve(args, keys))
    finally:
        os.close(lock)


if __name__ == "__main__":
    main()
