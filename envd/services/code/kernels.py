"""One Jupyter kernel driven over ZMQ with jupyter-client (no jupyter_server), shaped like Popen.

jupyter_client and zmq are imported lazily (first kernel start) so the daemon itself starts fast.
Kernels run as the daemon's user (root), like upstream's Jupyter service (code-interpreter.md §5.1), unless
given another `user`: jupyter-client's LocalProvisioner hands extra start_kernel arguments to Popen, whose
user/group/extra_groups drop the kernel's credentials (kept across restarts, which reuse the launch arguments).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import uuid
from typing import Any

from ...auth.users import User
from . import reaper
from .flow import OutputBudget
from .routing import CONNECTION_LOST, UNEXPECTED_END, Execution, Router

log = logging.getLogger("envd.code")

_imported: dict[str, Any] = {}


async def jupyter_client() -> Any:
    """The jupyter_client module, imported in a worker thread the first time (it pulls in zmq)."""
    if "jc" not in _imported:
        module = await asyncio.to_thread(importlib.import_module, "jupyter_client")
        await asyncio.to_thread(importlib.import_module, "jupyter_client.kernelspec")
        _imported["jc"] = module
    return _imported["jc"]


def _manager_class(jc: Any) -> Any:
    """AsyncKernelManager that gives the connection file to the kernel's user.

    jupyter-client writes it 0600 as us (root) right before the launch; a kernel running as someone else could
    not read it. chown keeps it private to that user.
    """
    if "manager" not in _imported:

        class Manager(jc.AsyncKernelManager):
            file_owner: tuple[int, int] | None = None

            def write_connection_file(self, **kwargs: Any) -> None:
                super().write_connection_file(**kwargs)
                if self.file_owner is not None:
                    os.chown(self.connection_file, *self.file_owner)

        _imported["manager"] = Manager
    return _imported["manager"]


class KernelStartError(Exception):
    pass


class NoSuchKernel(KernelStartError):
    pass


class Kernel:
    """A kernel process plus our client connection to it; `router` gets every message it sends."""

    def __init__(
        self, spec_name: str, kernel_dirs: list[str], cwd: str, env: dict[str, str],
        user: User | None = None, connection_dir: str | None = None,
    ) -> None:
        """`user`: run as this account (None: as the daemon); its connection file goes into `connection_dir`,
        a directory that user can read."""
        self.spec_name = spec_name
        self.kernel_dirs = kernel_dirs
        self.cwd = cwd
        self.env = env
        self.user = user
        self.connection_dir = connection_dir
        # A slow reader stops the kernel instead of growing envd's memory (flow.py).
        self.budget = OutputBudget(lambda: self._signal_group(signal.SIGSTOP),
                                   lambda: self._signal_group(signal.SIGCONT))
        self.router = Router(self.budget)
        self.id: str | None = None
        self._km: Any = None
        self._kc: Any = None
        self._readers: list[asyncio.Task] = []
        self._pgid: int | None = None  # the kernel's process group, known to the reaper

    async def start(self, startup_timeout: float = 60) -> str:
        jc = await jupyter_client()
        ksm = jc.kernelspec.KernelSpecManager(kernel_dirs=self.kernel_dirs, ensure_native_kernel=False)
        try:
            ksm.get_kernel_spec(self.spec_name)
        except jc.kernelspec.NoSuchKernel:
            raise NoSuchKernel(
                f"No such kernel named {self.spec_name} (looked in {', '.join(self.kernel_dirs)}; run `make kernels`)"
            ) from None
        self._km = _manager_class(jc)(kernel_name=self.spec_name, kernel_spec_manager=ksm)
        launch: dict[str, Any] = {}
        if self.user is not None:
            self._km.kernel_id = str(uuid.uuid4())
            self._km.connection_file = os.path.join(self.connection_dir or "", f"kernel-{self._km.kernel_id}.json")
            self._km.file_owner = (self.user.uid, self.user.gid)
            launch = {"user": self.user.uid, "group": self.user.gid, "extra_groups": self.user.groups()}
        try:
            await self._km.start_kernel(cwd=self.cwd, env=dict(self.env), **launch)
            self._watch()
            await self._connect(startup_timeout)
        except Exception as err:
            await self._kill_quietly()
            raise KernelStartError(str(err) or type(err).__name__) from err
        self.id = self._km.kernel_id
        return self.id

    async def _connect(self, timeout: float) -> None:
        self._kc = self._km.client()
        # No heartbeat channel: its thread pings every kernel each second, and death is found by polling the
        # process (contexts.py) instead.
        self._kc.start_channels(hb=False)
        await self._kc.wait_for_ready(timeout=timeout)
        self._readers = [
            # IOPub is read as fast as it comes: pausing it lets the kernel's PUB socket drop messages at its
            # high-water mark (lost output, or a lost `idle` that would never end the execution).
            asyncio.create_task(self._read(self._kc.get_iopub_msg, self.router.on_iopub)),
            asyncio.create_task(self._read(self._kc.get_shell_msg, self.router.on_shell)),
        ]

    async def _read(self, get: Any, handle: Any) -> None:
        try:
            while True:
                msg = await get()
                try:
                    handle(msg)
                except Exception:
                    log.exception("kernel message handling failed")
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # §4.8: the receive loop ended; everything in flight learns the connection is gone.
            log.warning("kernel %s connection lost: %s", self.id, err)
            self.router.end_all(CONNECTION_LOST, UNEXPECTED_END)

    async def _disconnect(self) -> None:
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            try:
                await task
            except BaseException:
                pass
        self._readers = []
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None

    def execute(self, code: str, silent: bool = False) -> Execution:
        """Send one execute_request; internal (silent) ones don't count and don't stop on error (Q12)."""
        if self._kc is None:
            raise ConnectionError("kernel is not connected")
        msg_id = self._kc.execute(
            code, silent=silent, store_history=not silent, allow_stdin=False, stop_on_error=not silent
        )
        # Registered before the loop can run a reader again: nothing of this request can be missed.
        return self.router.register(msg_id, silent)

    async def is_alive(self) -> bool:
        return self._km is not None and await self._km.is_alive()

    def _watch(self) -> None:
        """The reaper knows the live kernel's process group, and only that (reaper.py)."""
        pgid = getattr(self._km.provisioner, "pgid", None) if self._km is not None and self._km.has_kernel else None
        if pgid != self._pgid:
            reaper.forget(self._pgid)
            reaper.watch(pgid)
            self._pgid = pgid

    def _signal_group(self, signum: int) -> None:
        # Synchronous on purpose: called from message handling, between two IOPub reads.
        pgid = getattr(self._km.provisioner, "pgid", None) if self._km is not None else None
        if pgid:
            try:
                os.killpg(pgid, signum)
            except ProcessLookupError:
                pass

    async def interrupt(self) -> None:
        if self._km is not None:
            self.budget.resume()  # a stopped kernel would hold the SIGINT until resumed
            await self._km.interrupt_kernel()

    async def restart(self, timeout: float = 60) -> None:
        """Same id, fresh process (and state); executions in flight end (§4.9)."""
        self.router.end_all(UNEXPECTED_END)
        self.budget.resume()
        await self._disconnect()
        try:
            await self._km.restart_kernel(now=True)
            self._watch()
            await self._connect(timeout)
        except Exception as err:
            raise KernelStartError(str(err) or type(err).__name__) from err

    async def shutdown(self) -> None:
        self.router.end_all(UNEXPECTED_END)
        await self._disconnect()
        if self._km is not None:
            await self._km.shutdown_kernel(now=True)
            self._km = None
        self._watch()

    async def _kill_quietly(self) -> None:
        try:
            await self._disconnect()
            if self._km is not None and self._km.has_kernel:
                await self._km.shutdown_kernel(now=True)
            self._watch()
        except Exception:
            log.debug("cleanup of a failed kernel start failed", exc_info=True)
