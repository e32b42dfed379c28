"""Contexts (code-interpreter.md §4): one kernel each, created/listed/removed/restarted, and executions.

Protocol-agnostic: callers get plain dicts in the wire shape of §1.4 and envd.errors exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import Internal, InvalidArgument, NotFound
from ...state import SandboxState
from . import languages
from .kernel_env import kernel_dirs, kernel_environment, write_ipython_dir
from .kernels import Kernel, KernelStartError
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


@dataclass
class Context:
    id: str
    language: str
    cwd: str
    kernel: Kernel
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Sandbox env vars as last set in this kernel (§4.7); emptied by a restart.
    injected: dict[str, str] = field(default_factory=dict)

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
        self._defaults: dict[str, str] = {}  # language -> default context id
        self._default_locks: dict[str, asyncio.Lock] = {}
        self._ipython_dir: Path | None = None
        self._prepare_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()
        self._closed = False

    # -- contexts ---------------------------------------------------------------------------------------

    async def start_defaults(self) -> None:
        """§4.4: the default python context, created in the background after the daemon is up."""
        try:
            await self.default_context("python")
        except Exception as err:
            self.start_error = getattr(err, "message", str(err))
            log.error("default python context failed: %s", self.start_error)

    async def _environment(self) -> dict[str, str]:
        async with self._prepare_lock:
            if self._ipython_dir is None:
                self._ipython_dir = await asyncio.to_thread(write_ipython_dir, self.work_dir / "ipython")
        return kernel_environment(self.kernels_prefix, self._ipython_dir)

    async def create(self, language: str | None, cwd: str | None) -> Context:
        language = languages.normalize(language)
        cwd = cwd or DEFAULT_CWD
        # §4.6: the kernel starts in the requested directory. (IPython's `%cd` only prints for a missing
        # directory, so such a context is still created, in the default directory.) Launching there
        # directly also survives restarts (Q4).
        launch_cwd = next((d for d in (cwd, DEFAULT_CWD, "/") if os.path.isdir(d)), "/")
        kernel = Kernel(languages.kernel_spec_name(language), kernel_dirs(self.kernels_prefix), launch_cwd,
                        await self._environment())
        try:
            kernel_id = await kernel.start()
        except KernelStartError as err:
            raise Internal(f"Failed to create context: {err}") from err
        if self._closed:
            await kernel.shutdown()
            raise Internal("Failed to create context: the service is shutting down")
        context = Context(kernel_id, language, cwd, kernel)
        self._contexts[kernel_id] = context
        log.debug("context %s (%s) created in %s", kernel_id, language, cwd)
        return context

    async def default_context(self, language: str) -> Context:
        lock = self._default_locks.setdefault(language, asyncio.Lock())
        async with lock:  # concurrent first requests create only one (§4.4)
            context_id = self._defaults.get(language)
            # Q3: a removed default is recreated rather than left dangling.
            if context_id is None or context_id not in self._contexts:
                context = await self.create(language, DEFAULT_CWD)
                self._defaults[language] = context.id
                if language == "python":
                    self.ready.set()
                    self.start_error = None
                return context
            return self._contexts[context_id]

    def list(self) -> list[dict[str, str]]:
        return [context.info() for context in self._contexts.values()]

    def get(self, context_id: str) -> Context:
        if context_id == "default":  # Q11: the alias resolves to the one live default context
            context_id = self._defaults.get("python", context_id)
        context = self._contexts.get(context_id)
        if context is None:
            raise NotFound(f"Context {context_id} not found")
        return context

    async def resolve(self, context_id: str | None, language: str | None) -> Context:
        """§1.3: which context an /execute request runs in."""
        if context_id and language:
            raise InvalidArgument("Only one of context_id or language can be provided")
        if language:
            return await self.default_context(languages.normalize(language))
        if context_id:
            return self.get(context_id)
        return await self.default_context("python")

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
        context.injected = {}
        try:
            await context.kernel.restart()
        except Exception as err:
            log.warning("kernel %s restart failed: %s", context.id, err)
            raise Internal(f"Failed to restart context {context_id}") from err

    async def close(self) -> None:
        self._closed = True
        contexts = list(self._contexts.values())
        self._contexts.clear()
        results = await asyncio.gather(*(c.kernel.shutdown() for c in contexts), return_exceptions=True)
        for context, result in zip(contexts, results):
            if isinstance(result, Exception):
                log.warning("kernel %s shutdown failed: %s", context.id, result)

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
                yield event
            finished = True
            yield dict(END_OF_EXECUTION)
        finally:
            if not holding:
                if not acquire.cancel() and not acquire.cancelled() and acquire.exception() is None:
                    context.lock.release()
            else:
                abandoned = execution if execution is not None and not finished else None
                self._spawn(self._settle(context, abandoned, env_vars))

    async def _settle(self, context: Context, abandoned: Execution | None, env_vars: dict[str, str]) -> None:
        """Runs holding the context's lock, then releases it."""
        try:
            if abandoned is not None and not abandoned.done:
                abandoned.abandon()
                if not await self._interrupt(context, abandoned):
                    # e.g. a cell blocked in a top-level await ignores SIGINT (kernels.md)
                    log.warning("context %s did not stop on interrupt; restarting it", context.id)
                    await self._revive(context)
            if env_vars and context.id in self._contexts:
                await self._restore_env(context, env_vars)
        except Exception:
            log.exception("context %s: cleanup after execution failed", context.id)
        finally:
            if abandoned is not None:
                context.kernel.router.forget(abandoned.msg_id)
            context.lock.release()

    async def _interrupt(self, context: Context, execution: Execution) -> bool:
        """§1.4: client gone = interrupt. Repeated each second within the grace period: a SIGINT that lands
        between the kernel announcing the cell and running it is lost."""
        deadline = asyncio.get_running_loop().time() + INTERRUPT_GRACE_SECONDS
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            await context.kernel.interrupt()
            try:
                await asyncio.wait_for(execution.ended.wait(), min(1.0, left))
                return True
            except TimeoutError:
                continue
        return execution.done

    async def _revive(self, context: Context) -> None:
        context.injected = {}
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
