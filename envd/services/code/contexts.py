"""Contexts (code-interpreter.md §4): one kernel each, created/listed/removed/restarted, and executions.

Protocol-agnostic: callers get plain dicts in the wire shape of §1.4 and envd.errors exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...auth.users import User
from ...errors import Internal, InvalidArgument, NotFound
from ...state import SandboxState
from . import languages
from .kernel_env import kernel_dirs, kernel_environment, user_state_dir, write_ipython_dir
from .kernels import Kernel, KernelStartError, NoSuchKernel
from .routing import END, RESTARTING, UNEXPECTED_END, Execution

log = logging.getLogger("envd.code")

DEFAULT_CWD = "/home/user"  # §1.6, §4.4
KEEPALIVE = {"type": "keepalive"}
END_OF_EXECUTION = {"type": "end_of_execution"}
KEEPALIVE_SECONDS = 5.0  # §1.4
POLL_SECONDS = 0.5  # how often a silent kernel is checked for death
INTERRUPT_GRACE_SECONDS = 5.0  # after this an interrupted cell that still runs costs a restart
INTERNAL_TIMEOUT_SECONDS = 30.0
SEND_FAILED = {"type": "error", "name": "WebSocketError", "value": "Failed to send execution request", "traceback": ""}


class UnknownLanguage(Internal):
    """No kernel for the language: a 500 on the HTTP API (§1.6), INVALID_ARGUMENT on the native service."""


@dataclass
class Context:
    id: str
    language: str
    cwd: str
    kernel: Kernel
    user: str = ""  # the account the kernel runs as
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Sandbox env vars as last set in this kernel (§4.7); emptied by a restart.
    injected: dict[str, str] = field(default_factory=dict)
    # User cells run since the kernel (re)started, for kernels whose counter counts silent cells too.
    executions: int = 0

    def info(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}


class CodeService:
    def __init__(self, state: SandboxState, kernels_prefix: str, work_dir: str) -> None:
        self.state = state
        self.kernels_prefix = kernels_prefix
        self.work_dir = Path(work_dir)
        self.ready = asyncio.Event()  # the default python context exists (§4.4)
        self.start_error: str | None = None
        self._contexts: dict[str, Context] = {}  # creation order (§1.5)
        # (language, user) -> default context id; user None: the daemon's own (the HTTP API's defaults)
        self._defaults: dict[tuple[str, str | None], str] = {}
        self._default_locks: dict[tuple[str, str | None], asyncio.Lock] = {}
        self._ipython_dir: Path | None = None
        self._user_dirs: dict[str, Path] = {}  # user name -> its kernels' private directory
        self._prepare_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self._closed = False

    # -- contexts ---------------------------------------------------------------------------------------

    async def start_defaults(self) -> None:
        """§4.4: the default python context, created in the background after the daemon is up, then the
        javascript one (listed second, §1.5). Only python gates /health: a Deno kernel costs ~0.5 s more."""
        try:
            await self.default_context("python")
        except Exception as err:
            self.start_error = getattr(err, "message", str(err))
            log.error("default python context failed: %s", self.start_error)
            return
        try:
            await self.default_context("javascript")
        except Exception as err:  # created lazily on first use instead
            log.warning("default javascript context failed: %s", getattr(err, "message", str(err)))

    async def _environment(self) -> dict[str, str]:
        async with self._prepare_lock:
            if self._ipython_dir is None:
                self._ipython_dir = await asyncio.to_thread(write_ipython_dir, self.work_dir / "ipython")
        return kernel_environment(self.kernels_prefix, self._ipython_dir)

    async def _user_environment(self, user: User) -> tuple[dict[str, str], str]:
        """The environment and connection-file directory of a kernel running as `user`."""
        async with self._prepare_lock:
            if user.name not in self._user_dirs:
                self._user_dirs[user.name] = await asyncio.to_thread(user_state_dir, user)
        private = self._user_dirs[user.name]
        return kernel_environment(self.kernels_prefix, private / "ipython", user), str(private)

    @staticmethod
    def _switching(user: User | None) -> User | None:
        """The user to switch a kernel to; None when it runs as the daemon itself (root, §5.1)."""
        return None if user is None or user.uid == os.geteuid() else user

    async def create(self, language: str | None, cwd: str | None, user: User | None = None) -> Context:
        """A new context; its kernel runs as `user` (None: as the daemon, like upstream's kernels)."""
        language = languages.normalize(language)
        cwd = cwd or DEFAULT_CWD
        if languages.cwd_must_exist(language) and not os.path.isdir(cwd):
            raise Internal("Failed to set working directory")  # §1.6; nothing started, nothing left (Q8)
        # §4.6: the kernel starts in the requested directory. (IPython's `%cd` only prints for a missing
        # directory, so such a context is still created, in the default directory.) Launching there
        # directly also survives restarts (Q4).
        launch_cwd = next((d for d in (cwd, DEFAULT_CWD, "/") if os.path.isdir(d)), "/")
        switch = self._switching(user)
        if switch is None:
            env, connection_dir = await self._environment(), None
        else:
            env, connection_dir = await self._user_environment(switch)
        kernel = Kernel(languages.kernel_spec_name(language), kernel_dirs(self.kernels_prefix), launch_cwd,
                        env, switch, connection_dir)
        kernel.router.traceback_joiner = languages.traceback_joiner(language)
        try:
            kernel_id = await kernel.start()
        except NoSuchKernel as err:
            raise UnknownLanguage(f"Failed to create context: {err}") from err
        except KernelStartError as err:
            raise Internal(f"Failed to create context: {err}") from err
        if self._closed:
            await kernel.shutdown()
            raise Internal("Failed to create context: the service is shutting down")
        context = Context(kernel_id, language, cwd, kernel, env["USER"])
        self._contexts[kernel_id] = context
        log.debug("context %s (%s) created in %s", kernel_id, language, cwd)
        return context

    async def default_context(self, language: str, user: User | None = None) -> Context:
        """The language's default context; each user has its own (None: the daemon's, the HTTP API's)."""
        switch = self._switching(user)
        key = (language, switch.name if switch else None)
        lock = self._default_locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent first requests create only one (§4.4)
            context_id = self._defaults.get(key)
            # Q3: a removed default is recreated rather than left dangling.
            if context_id is None or context_id not in self._contexts:
                context = await self.create(language, switch.home if switch else DEFAULT_CWD, switch)
                self._defaults[key] = context.id
                if key == ("python", None):
                    self.ready.set()
                    self.start_error = None
                return context
            return self._contexts[context_id]

    def contexts(self) -> list[Context]:
        return list(self._contexts.values())  # creation order (§1.5)

    def list(self) -> list[dict[str, str]]:
        return [context.info() for context in self._contexts.values()]

    def get(self, context_id: str) -> Context:
        if context_id == "default":  # Q11: the alias resolves to the one live default context
            context_id = self._defaults.get(("python", None), context_id)
        context = self._contexts.get(context_id)
        if context is None:
            raise NotFound(f"Context {context_id} not found")
        return context

    async def resolve(self, context_id: str | None, language: str | None, user: User | None = None) -> Context:
        """§1.3: which context an /execute request runs in (defaults: `user`'s)."""
        if context_id and language:
            raise InvalidArgument("Only one of context_id or language can be provided")
        if language:
            return await self.default_context(languages.normalize(language), user)
        if context_id:
            return self.get(context_id)
        return await self.default_context("python", user)

    async def remove(self, context_id: str) -> None:
        context = self.get(context_id)
        self._contexts.pop(context.id, None)
        try:
            await context.kernel.shutdown()
        except Exception as err:
            log.warning("kernel %s shutdown failed: %s", context.id, err)
            raise Internal(f"Failed to remove context {context_id}") from err

    async def restart(self, context_id: str) -> None:
        context = self.get(context_id)
        try:
            await self._revive(context)
        except Exception as err:
            log.warning("kernel %s restart failed: %s", context.id, err)
            raise Internal(f"Failed to restart context {context_id}") from err

    async def interrupt(self, context_id: str) -> bool:
        """Interrupt the context's running execution (as a client leaving would, §1.4); False if none runs.

        An execution that does not stop within the grace period costs a restart, as in `_settle`.
        """
        context = self.get(context_id)
        running = [e for e in context.kernel.router.executions.values() if not e.silent]
        if not running:
            return False
        await self._stop(context, running[0])
        return True

    async def close(self) -> None:
        self._closed = True
        contexts = list(self._contexts.values())
        self._contexts.clear()
        results = await asyncio.gather(*(c.kernel.shutdown() for c in contexts), return_exceptions=True)
        for context, result in zip(contexts, results):
            if isinstance(result, Exception):
                log.warning("kernel %s shutdown failed: %s", context.id, result)
        for path in self._user_dirs.values():
            await asyncio.to_thread(shutil.rmtree, path, True)
        self._user_dirs.clear()

    # -- executions -------------------------------------------------------------------------------------

    async def execute(
        self, context: Context, code: str, env_vars: dict[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of one execution (§1.4), ending with exactly one end_of_execution.

        Closing the iterator early (client gone) interrupts the kernel; the context's lock is released only
        once the kernel is free again and per-execution env vars are restored (Q5).
        """
        env_vars = dict(env_vars or {})
        acquire = asyncio.ensure_future(context.lock.acquire())
        holding = False
        execution: Execution | None = None
        finished = False
        try:
            # Q2: keepalives while queued behind another execution, too.
            while not (await asyncio.wait({acquire}, timeout=KEEPALIVE_SECONDS))[0]:
                yield dict(KEEPALIVE)
            acquire.result()
            holding = True
            try:
                if not await context.kernel.is_alive():
                    await self._revive(context)
                await self._set_env(context, env_vars)
                execution = context.kernel.execute(code)
            except Exception as err:
                log.warning("context %s: cannot send the execution: %s", context.id, err)
                yield dict(SEND_FAILED)
                yield dict(UNEXPECTED_END)
                finished = True
                yield dict(END_OF_EXECUTION)
                return
            silence = 0.0
            while True:
                try:
                    event = await asyncio.wait_for(execution.next_event(), POLL_SECONDS)
                except TimeoutError:
                    silence += POLL_SECONDS
                    if not await context.kernel.is_alive():
                        # §4.9: no manager reports `restarting` for us, so a dead kernel is found here and
                        # restarted the way Jupyter's restarter would.
                        context.kernel.router.end_all(RESTARTING)
                        try:
                            await self._revive(context)
                        except Exception as err:  # the stream still ends properly; the next run retries
                            log.error("context %s: restart after kernel death failed: %s", context.id, err)
                    elif silence >= KEEPALIVE_SECONDS:
                        silence = 0.0
                        yield dict(KEEPALIVE)
                    continue
                silence = 0.0
                if event is END:
                    break
                yield self._shaped(context, event)
            finished = True
            yield dict(END_OF_EXECUTION)
        finally:
            if not holding:
                if not acquire.cancel() and not acquire.cancelled() and acquire.exception() is None:
                    context.lock.release()
            else:
                abandoned = execution if execution is not None and not finished else None
                self._spawn(self._settle(context, abandoned, env_vars))

    def _shaped(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Kernel events in the common shape: errors per language, counters that skip internal cells (§4.5)."""
        if event["type"] == "error":
            return languages.error_event(context.language, event)
        if event["type"] == "number_of_executions" and languages.counts_silent_cells(context.language):
            context.executions += 1
            return {**event, "execution_count": context.executions}
        return event

    async def _settle(self, context: Context, abandoned: Execution | None, env_vars: dict[str, str]) -> None:
        """Runs holding the context's lock, then releases it."""
        try:
            if abandoned is not None and not abandoned.done:
                abandoned.abandon()
                await self._stop(context, abandoned)
            if env_vars and context.id in self._contexts:
                await self._restore_env(context, env_vars)
        except Exception:
            log.exception("context %s: cleanup after execution failed", context.id)
        finally:
            if abandoned is not None:
                context.kernel.router.forget(abandoned.msg_id)
            context.lock.release()

    async def _stop(self, context: Context, execution: Execution) -> None:
        """§1.4: client gone = interrupt. Repeated each second within the grace period: a SIGINT that lands
        between the kernel announcing the cell and running it is lost. A cell still running after it (e.g.
        blocked in a top-level await, which ignores SIGINT: kernels.md) costs a restart. Deno's kernel cannot
        be interrupted (SIGINT kills it): a restart at once, as upstream's JavaScript kernel does."""
        if not languages.interrupt_restarts(context.language):
            deadline = asyncio.get_running_loop().time() + INTERRUPT_GRACE_SECONDS
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                await context.kernel.interrupt()
                try:
                    await asyncio.wait_for(execution.ended.wait(), min(1.0, left))
                    return
                except TimeoutError:
                    continue
            if execution.done:
                return
            log.warning("context %s did not stop on interrupt; restarting it", context.id)
        await self._revive(context)

    async def _revive(self, context: Context) -> None:
        """A fresh kernel process for the context (same id): its injected env and cell count start over."""
        context.injected = {}
        context.executions = 0
        await context.kernel.restart()

    async def _set_env(self, context: Context, env_vars: dict[str, str]) -> None:
        """§4.7: sandbox env vars (kept in sync with envd's own state), then this execution's."""
        desired = self.state.envs.all()
        lines = [languages.set_env_statement(context.language, k, v)
                 for k, v in desired.items() if context.injected.get(k) != v]
        lines += [languages.unset_env_statement(context.language, k) for k in context.injected if k not in desired]
        lines += [languages.set_env_statement(context.language, k, v) for k, v in env_vars.items()]
        context.injected = dict(desired)
        await self._internal(context, lines)

    async def _restore_env(self, context: Context, env_vars: dict[str, str]) -> None:
        lines = [
            languages.set_env_statement(context.language, k, context.injected[k]) if k in context.injected
            else languages.unset_env_statement(context.language, k)
            for k in env_vars
        ]
        await self._internal(context, lines)

    async def _internal(self, context: Context, lines: list[str | None]) -> None:
        """A silent execution (§4.5): no execute_input, no counter increment; errors only logged."""
        code = "\n".join(line for line in lines if line)
        if not code:
            return
        execution = context.kernel.execute(code, silent=True)
        try:
            await asyncio.wait_for(execution.ended.wait(), INTERNAL_TIMEOUT_SECONDS)
        except TimeoutError:
            context.kernel.router.forget(execution.msg_id)
            log.warning("context %s: internal execution timed out", context.id)
            return
        while not execution.events.empty():
            event = execution.events.get_nowait()
            if event is not END and event.get("type") == "error":
                log.warning("context %s: internal execution failed: %s: %s", context.id, event["name"], event["value"])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
