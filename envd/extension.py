"""The heavy part of the app: the RPC services and the file-transfer routes.

Imported in a worker thread once the daemon already answers /health (see server.build_app): connectrpc,
protobuf and the service cores are most of envd's import time.
"""

from __future__ import annotations

from pathlib import Path

from .api.app import Extension, build_routes
from .api.codecs import rpc_codecs
from .api.files import FileRoutes
from .api.rpc import EnvdInterceptor
from .config import Config
from .host.cgroups import CgroupManager, create_cgroup_manager
from .host.handover import Handover, Part
from .services.code.contexts import CodeService
from .services.code.rpc import CodeRpc
from .services.filesystem.rpc import FilesystemService
from .services.git.rpc import GitService
from .services.metrics.rpc import MetricsService
from .services.process.rpc import ProcessService
from .spec.code.code_connect import InterpreterASGIApplication
from .spec.filesystem.filesystem_connect import FilesystemASGIApplication
from .spec.git.git_connect import GitASGIApplication
from .spec.metrics.metrics_connect import MetricsASGIApplication
from .spec.process.process_connect import ProcessASGIApplication
from .state import SandboxState


def build_extension(
    config: Config, state: SandboxState, cgroups: CgroupManager | None = None, handover: Handover | None = None
) -> Extension:
    rpc_options = dict(
        interceptors=[EnvdInterceptor(state)],
        read_max_bytes=config.rpc_read_max_bytes,
        # Never compress RPC responses: connect-web sends Accept-Encoding: gzip and JS rejects it on streams.
        compressions=[],
        codecs=rpc_codecs(),
    )
    filesystem = FilesystemService(state)
    # §1.3 step 7: the process service places its children through this (§8.9).
    process = ProcessService(state, cgroups=cgroups or create_cgroup_manager(config))
    if handover is not None:  # §3.12: processes survive a live upgrade
        handover.register("processes", Part(export=process.table.export_handover, adopt=process.table.adopt))
    metrics = MetricsService()
    git = GitService(state)  # our own service (proto/git); dulwich is imported on first use
    # One code-interpreter core for code.Interpreter here and the HTTP API on the code port (server.py). Kernels
    # start only when used: with -code-port 0 nothing runs until a native call asks for a context.
    code = CodeService(state, config.kernels_prefix, str(Path(config.run_dir) / "code"))
    services = [
        FilesystemASGIApplication(filesystem, **rpc_options),
        ProcessASGIApplication(process, **rpc_options),
        MetricsASGIApplication(metrics, **rpc_options),
        GitASGIApplication(git, **rpc_options),
        InterpreterASGIApplication(CodeRpc(state, code), **rpc_options),
    ]
    return Extension(
        routes=build_routes(FileRoutes(state).routes()),
        services={svc.path: svc for svc in services},
        on_shutdown=[filesystem.close, process.close, metrics.close, git.close, code.close],
        code=code,
    )
