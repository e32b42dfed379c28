"""Kernel message routing (code-interpreter.md §4.8): which execution does a kernel message belong to.

No I/O here: the kernel wrapper feeds every IOPub and shell message in; each execution in flight gets its
events (plain dicts in the wire shape of §1.4) on its own queue, followed by END. An execution ends once the
kernel has both gone idle for it and sent its execute_reply (the two travel on different sockets, so either
may arrive first; waiting for both keeps a reply-only error from being lost), or on abort/restart/loss.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from .flow import OutputBudget, event_size
from .results import result_event

END = None  # queue marker: the execution is over

ABORTED = {"type": "error", "name": "ExecutionAborted", "value": "Execution was aborted", "traceback": ""}
RESTARTING = {"type": "error", "name": "ContextRestarting", "value": "Context was restarted", "traceback": ""}
CONNECTION_LOST = {
    "type": "error",
    "name": "WebSocketError",
    "value": "The connections was lost, rerun the code to get the results",  # sic, §1.4
    "traceback": "",
}
UNEXPECTED_END = {
    "type": "error",
    "name": "UnexpectedEndOfExecution",
    "value": "Connection to the execution was closed before the execution was finished",
    "traceback": "",
}


def timestamp(header: dict[str, Any]) -> str:
    """§1.4: the header date as `datetime.isoformat()` in UTC with an explicit offset."""
    date = header.get("date")
    if isinstance(date, str):
        try:
            date = datetime.fromisoformat(date.replace("Z", "+00:00"))
        except ValueError:
            return date
    if not isinstance(date, datetime):
        date = datetime.now(timezone.utc)
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    return date.astimezone(timezone.utc).isoformat()


class Execution:
    """One request in flight: its event queue and the flags of §4.8."""

    def __init__(self, msg_id: str, silent: bool, budget: OutputBudget | None = None) -> None:
        self.msg_id = msg_id
        self.silent = silent
        self.budget = budget  # None: unbounded (internal executions, whose output is tiny)
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.errored = False
        self.idle = False
        self.replied = False
        self.done = False
        self.ended = asyncio.Event()
        # Nobody reads the events any more (client gone): drop them, only the end matters.
        self.discard = False

    def emit(self, event: dict[str, Any]) -> None:
        if not self.done and not self.discard:
            if self.budget is not None:
                self.budget.add(event_size(event))
            self.events.put_nowait(event)

    async def next_event(self) -> dict[str, Any] | None:
        """The next event (END once over); its bytes leave the kernel's output budget."""
        event = await self.events.get()
        if event is not END and self.budget is not None:
            self.budget.release(event_size(event))
        return event

    def abandon(self) -> None:
        """Nobody will read the events any more: drop the queued ones (freeing the budget) and later ones."""
        self.discard = True
        while not self.events.empty():
            event = self.events.get_nowait()
            if event is END:
                self.events.put_nowait(END)
                break
            if self.budget is not None:
                self.budget.release(event_size(event))

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.events.put_nowait(END)
            self.ended.set()

    def error(self, name: str, value: str, traceback: list[str] | str) -> None:
        # §1.4: only the first kernel-reported error of a cell (IOPub and execute_reply repeat it).
        if self.errored:
            return
        self.errored = True
        if isinstance(traceback, list):
            traceback = "".join(str(line) for line in traceback)
        self.emit({"type": "error", "name": str(name or ""), "value": str(value or ""), "traceback": traceback or ""})

    def _maybe_finish(self) -> None:
        if self.idle and self.replied:
            self.finish()


class Router:
    """Routes one kernel's messages to its executions in flight, keyed by request msg_id."""

    def __init__(self, budget: OutputBudget | None = None) -> None:
        self.executions: dict[str, Execution] = {}
        self.budget = budget

    def register(self, msg_id: str, silent: bool = False) -> Execution:
        execution = Execution(msg_id, silent, None if silent else self.budget)
        self.executions[msg_id] = execution
        return execution

    def forget(self, msg_id: str) -> None:
        # Later messages for it are dropped (§1.4, client disconnect).
        self.executions.pop(msg_id, None)

    @property
    def busy(self) -> bool:
        return bool(self.executions)

    def _target(self, msg: dict[str, Any]) -> Execution | None:
        parent_id = (msg.get("parent_header") or {}).get("msg_id")
        return self.executions.get(parent_id) if parent_id else None

    def _end(self, execution: Execution) -> None:
        execution.finish()
        self.executions.pop(execution.msg_id, None)

    def end_all(self, *events: dict[str, Any]) -> None:
        """Every execution in flight gets `events` then ends (restart, kernel death, connection loss)."""
        for execution in list(self.executions.values()):
            for event in events:
                execution.emit(dict(event))
            self._end(execution)

    def on_iopub(self, msg: dict[str, Any]) -> None:
        msg_type = msg.get("msg_type") or (msg.get("header") or {}).get("msg_type")
        content = msg.get("content") or {}
        if msg_type == "status" and content.get("execution_state") == "restarting":
            self.end_all(RESTARTING)
            return
        execution = self._target(msg)
        if execution is None:
            return
        if msg_type == "execute_input":
            execution.emit({"type": "number_of_executions", "execution_count": content.get("execution_count")})
        elif msg_type == "stream":
            name = content.get("name")
            if name in ("stdout", "stderr"):
                execution.emit({"type": name, "text": content.get("text", ""), "timestamp": timestamp(msg.get("header") or {})})
        elif msg_type == "display_data":
            execution.emit(result_event(content.get("data") or {}, is_main_result=False))
        elif msg_type == "execute_result":
            execution.emit(result_event(content.get("data") or {}, is_main_result=True))
        elif msg_type == "error":
            execution.error(content.get("ename", ""), content.get("evalue", ""), content.get("traceback") or [])
        elif msg_type == "status" and content.get("execution_state") == "idle":
            execution.idle = True
            execution._maybe_finish()
            if execution.done:
                self.executions.pop(execution.msg_id, None)

    def on_shell(self, msg: dict[str, Any]) -> None:
        msg_type = msg.get("msg_type") or (msg.get("header") or {}).get("msg_type")
        if msg_type != "execute_reply":
            return
        execution = self._target(msg)
        if execution is None:
            return
        content = msg.get("content") or {}
        status = content.get("status")
        execution.replied = True
        if status == "error":
            execution.error(content.get("ename", ""), content.get("evalue", ""), content.get("traceback") or [])
        elif status in ("abort", "aborted"):
            # Q6: Jupyter kernels say `aborted`; no execute_input/idle may follow, so end here.
            execution.emit(dict(ABORTED))
            self._end(execution)
            return
        execution._maybe_finish()
        if execution.done:
            self.executions.pop(execution.msg_id, None)
