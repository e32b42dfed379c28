"""Build the ASGI app, and serve it in-process with hypercorn until SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from .api.app import EnvdApp, Extension, build_routes
from .api.control import ControlRoutes
from .api.sandbox import SandboxRoutes
from .config import Config
from .host.mmds import MMDS, MMDSClient
from .host.oom import protect_daemon
from .host.setup import Host, build_host
from .state import SandboxState

log = logging.getLogger("envd")


def initial_state(config: Config) -> SandboxState:
    state = SandboxState(default_user=config.default_user, default_workdir=config.default_workdir)
    state.envs.set_internal("E2B_SANDBOX", "false" if config.is_not_fc else "true")
    return state


def write_run_files(config: Config, state: SandboxState) -> None:
    try:
        run_dir = Path(config.run_dir)
        run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        marker = run_dir / ".E2B_SANDBOX"
        marker.unlink(missing_ok=True)
        marker.write_text(state.envs.all()["E2B_SANDBOX"])
        marker.chmod(0o444)
    except OSError as err:
        log.warning("cannot write %s: %s", config.run_dir, err)


def start_mmds(config: Config, state: SandboxState) -> MMDS:
    """§1.3 steps 5-6: FC mode polls MMDS in the background and ships logs to the collector it names."""
    mmds = MMDS(state, config.run_dir, MMDSClient(config.mmds_address), enabled=not config.is_not_fc)
    if mmds.enabled:
        from .host.log_export import LogExporter

        exporter = LogExporter()
        logging.getLogger().addHandler(exporter)
        mmds.listeners.append(exporter.configure)
        mmds.start()
    return mmds


def build_app(config: Config, state: SandboxState, mmds: MMDS, host: Host | None = None) -> EnvdApp:
    """The light routes (/health, /init, /envs, /metrics, control) at once; services once serving has started."""
    host = host or build_host(config)
    sandbox = SandboxRoutes(
        state,
        clock=host.clock,
        mmds_token_hash=mmds.token_hash,
        install_ca_bundle=host.ca_bundle.install,
        freezer=host.freezer,
        volumes=host.volumes,
        handover=host.handover,
        after_init=mmds.repoll,
        entropy=host.entropy,
    )
    control = ControlRoutes(state, host.freezer, host.fsfreeze, host.handover)

    async def load_extension() -> Extension:
        module = await asyncio.to_thread(importlib.import_module, "envd.extension")
        return module.build_extension(config, state, cgroups=host.cgroups, handover=host.handover)

    return EnvdApp(
        state=state,
        routes=build_routes(sandbox.routes(), control.routes()),
        load_extension=load_extension,
        on_shutdown=[mmds.close],
    )


def port_unavailable(host: str, port: int) -> str | None:
    """Why `port` cannot be bound (None if it can), checked before hypercorn binds all ports at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            return err.strerror or str(err)
    return None


def without_busy_code_port(config: Config) -> Config:
    """envd's own port matters more: serve it without the code interpreter rather than not at all."""
    if config.code_port and (problem := port_unavailable(config.host, config.code_port)):
        log.error("code port %d unavailable (%s): code interpreter disabled", config.code_port, problem)
        return dataclasses.replace(config, code_port=0)
    return config


def with_code_port(config: Config, app: EnvdApp) -> Callable:
    """Port 49999 (code-interpreter.md §1) on the same hypercorn instance, dispatched by the server port.

    Its core is the extension's (shared with the native code service; jupyter_client loads with the first
    kernel), and the default context starts once envd's own services have loaded: the daemon's start stays
    fast (§4.4: kernels start in the background).
    """
    if not config.code_port:
        return app
    from .api.code_http import CodePort

    async def code_service():
        await app.wait_loaded()
        if app.code is None:
            raise RuntimeError(app.load_error or "the code service is not loaded")
        return app.code

    code = CodePort(code_service)
    background: set[asyncio.Task] = set()

    async def dispatch(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            task = asyncio.create_task(code.start())
            background.add(task)
            task.add_done_callback(background.discard)
            await app(scope, receive, send)
            return
        server = scope.get("server")
        await (code if server and server[1] == config.code_port else app)(scope, receive, send)

    return dispatch


def hypercorn_config(config: Config):
    from hypercorn.config import Config as HypercornConfig

    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    if config.code_port:
        hc.bind.append(f"{config.host}:{config.code_port}")
    hc.keep_alive_timeout = 640  # longer than the fronting proxy's idle timeout (§1.6)
    hc.keep_alive_max_requests = 1_000_000  # the SDKs pool connections
    hc.include_server_header = False
    hc.accesslog = logging.getLogger("hypercorn.access") if config.verbose else None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 2
    return hc


async def serve(config: Config) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve

    from . import hypercorn_eof_fix, hypercorn_h2_fix

    hypercorn_eof_fix.apply()
    hypercorn_h2_fix.apply()
    protect_daemon()  # §1.1: oom_score_adj -1000
    config = without_busy_code_port(config)
    state = initial_state(config)
    write_run_files(config, state)
    mmds = start_mmds(config, state)
    host = build_host(config)
    if config.resume_handover and host.handover.resume():
        state.resumed = True
        host.handover.arm_fallback_thaw()  # the workload stays frozen until /init, at most 60 s (§3.12)
    app = with_code_port(config, build_app(config, state, mmds, host))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("envd listening", extra={"fields": {"port": config.port, "code_port": config.code_port, "pid": os.getpid()}})
    host.start()
    try:
        await hypercorn_serve(app, hypercorn_config(config), shutdown_trigger=stop.wait)
    finally:
        await host.close()
    log.info("envd stopped")
