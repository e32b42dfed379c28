"""Kernel message routing (code-interpreter.md §4.8): synthetic messages for the rules, then a real ipykernel
for the orderings that only a kernel produces (IOPub vs shell reply, silent cells, abort after an error,
restart and death of the kernel)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest
import pytest_asyncio

from envd.services.code.kernel_env import kernel_dirs, kernel_environment, write_ipython_dir
from envd.services.code.kernels import Kernel, KernelStartError
from envd.services.code import routing
from envd.services.code.routing import END, Router, timestamp

PREFIX = "/opt/envd-kernels"

pytestmark = pytest.mark.asyncio


def msg(msg_type: str, parent: str | None, channel_content: dict | None = None, date=None) -> dict:
    return {
        "msg_type": msg_type,
        "header": {"msg_type": msg_type, "date": date or datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)},
        "parent_header": {"msg_id": parent} if parent else {},
        "content": channel_content or {},
    }


def drain(execution) -> list:
    events = []
    while not execution.events.empty():
        events.append(execution.events.get_nowait())
    return events


async def test_events_of_one_cell_in_order_ending_on_idle_and_reply() -> None:
    router = Router()
    ex = router.register("a")
    router.on_iopub(msg("status", "a", {"execution_state": "busy"}))
    router.on_iopub(msg("execute_input", "a", {"execution_count": 3}))
    router.on_iopub(msg("stream", "a", {"name": "stdout", "text": "hi\n"}))
    router.on_iopub(msg("display_data", "a", {"data": {"text/plain": "'x'", "image/png": "AAA"}}))
    router.on_iopub(msg("execute_result", "a", {"data": {"text/plain": "2"}, "execution_count": 3}))
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    assert not ex.done  # the reply is still on its way (other socket)
    router.on_shell(msg("execute_reply", "a", {"status": "ok"}))
    assert ex.done and router.executions == {}
    assert drain(ex) == [
        {"type": "number_of_executions", "execution_count": 3},
        {"type": "stdout", "text": "hi\n", "timestamp": "2025-03-01T10:00:00.123456+00:00"},
        {"type": "result", "text": "x", "png": "AAA", "extra": {}, "is_main_result": False},
        {"type": "result", "text": "2", "extra": {}, "is_main_result": True},
        END,
    ]


async def test_reply_before_idle_also_ends_once() -> None:
    router = Router()
    ex = router.register("a")
    router.on_shell(msg("execute_reply", "a", {"status": "ok"}))
    assert not ex.done
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    router.on_iopub(msg("stream", "a", {"name": "stdout", "text": "late\n"}))  # after idle: dropped
    assert drain(ex) == [END]


async def test_only_the_first_error_is_forwarded() -> None:
    router = Router()
    ex = router.register("a")
    router.on_iopub(msg("error", "a", {"ename": "NameError", "evalue": "boom", "traceback": ["a", "b"]}))
    router.on_shell(msg("execute_reply", "a", {"status": "error", "ename": "NameError", "evalue": "boom"}))
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    assert drain(ex) == [{"type": "error", "name": "NameError", "value": "boom", "traceback": "ab"}, END]


async def test_reply_only_error_still_reported_with_empty_defaults() -> None:
    router = Router()
    ex = router.register("a")
    router.on_shell(msg("execute_reply", "a", {"status": "error"}))
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    assert drain(ex) == [{"type": "error", "name": "", "value": "", "traceback": ""}, END]


async def test_reply_error_first_yields_to_the_iopub_error() -> None:
    # Deno: the reply (empty ename/evalue) overtakes the IOPub error on the other socket
    router = Router()
    ex = router.register("a")
    router.on_shell(msg("execute_reply", "a", {"status": "error"}))
    router.on_iopub(msg("execute_input", "a", {"execution_count": 1}))
    router.on_iopub(msg("error", "a", {"ename": "SyntaxError", "evalue": "bad", "traceback": ["l1", "l2"]}))
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    assert drain(ex) == [{"type": "number_of_executions", "execution_count": 1},
                         {"type": "error", "name": "SyntaxError", "value": "bad", "traceback": "l1l2"}, END]


async def test_traceback_joiner_is_per_router() -> None:
    router = Router()
    router.traceback_joiner = "\n"
    ex = router.register("a")
    router.on_iopub(msg("error", "a", {"ename": "E", "evalue": "v", "traceback": ["l1", "l2"]}))
    assert drain(ex)[0]["traceback"] == "l1\nl2"


async def test_idle_without_a_reply_ends_after_a_grace_period(monkeypatch) -> None:
    # bash_kernel's handler raises on incomplete input: idle comes, the reply never does
    monkeypatch.setattr(routing, "NO_REPLY_GRACE_SECONDS", 0.05)
    router = Router()
    ex = router.register("a")
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    assert not ex.done
    await asyncio.wait_for(ex.ended.wait(), 5)
    assert drain(ex) == [dict(routing.NO_REPLY), END] and router.executions == {}
    # a reply in time: no error
    ok = router.register("b")
    router.on_iopub(msg("status", "b", {"execution_state": "idle"}))
    router.on_shell(msg("execute_reply", "b", {"status": "ok"}))
    await asyncio.sleep(0.1)
    assert drain(ok) == [END]


@pytest.mark.parametrize("status", ["abort", "aborted"])
async def test_aborted_reply_ends_with_execution_aborted(status: str) -> None:
    router = Router()
    ex = router.register("a")
    router.on_shell(msg("execute_reply", "a", {"status": status}))
    assert drain(ex) == [
        {"type": "error", "name": "ExecutionAborted", "value": "Execution was aborted", "traceback": ""}, END]


async def test_foreign_and_orphan_messages_are_dropped() -> None:
    router = Router()
    ex = router.register("a")
    router.on_iopub(msg("stream", "other", {"name": "stdout", "text": "x"}))
    router.on_iopub(msg("stream", None, {"name": "stdout", "text": "x"}))
    router.on_iopub(msg("update_display_data", "a", {"data": {"text/plain": "1"}}))
    router.on_iopub(msg("clear_output", "a"))
    router.forget("a")
    router.on_iopub(msg("stream", "a", {"name": "stdout", "text": "x"}))
    assert drain(ex) == []


async def test_restarting_status_ends_every_execution_in_flight() -> None:
    router = Router()
    a, b = router.register("a"), router.register("b")
    router.on_iopub(msg("status", None, {"execution_state": "restarting"}))
    restarting = {"type": "error", "name": "ContextRestarting", "value": "Context was restarted", "traceback": ""}
    assert drain(a) == [restarting, END] and drain(b) == [restarting, END]
    assert not router.busy


async def test_timestamp_renders_utc_with_offset() -> None:
    assert timestamp({"date": "2025-03-01T10:00:00Z"}) == "2025-03-01T10:00:00+00:00"
    assert timestamp({"date": datetime(2025, 3, 1, 11, 0, tzinfo=timezone.utc)}) == "2025-03-01T11:00:00+00:00"


# -- with a real ipykernel ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def kernel(tmp_path: Path):
    if not Path(PREFIX, "share/jupyter/kernels/python3/kernel.json").exists():
        pytest.fail("the python kernel is not installed: run `make kernels`")
    ipython_dir = write_ipython_dir(tmp_path / "ipython")
    k = Kernel("python3", kernel_dirs(PREFIX), str(tmp_path), kernel_environment(PREFIX, ipython_dir))
    await k.start()
    yield k
    await k.shutdown()


async def events_of(execution, timeout: float = 20) -> list:
    events = []
    while True:
        event = await asyncio.wait_for(execution.events.get(), timeout)
        if event is END:
            return events
        events.append(event)


async def test_real_kernel_stream_order_and_counter(kernel: Kernel) -> None:
    code = "import sys\nprint('a', flush=True)\nprint('b', file=sys.stderr, flush=True)\nprint('c')\n1 + 1"
    events = await events_of(kernel.execute(code))
    assert [(e["type"], e.get("text")) for e in events] == [
        ("number_of_executions", None), ("stdout", "a\n"), ("stderr", "b\n"), ("stdout", "c\n"), ("result", "2")]
    assert events[0]["execution_count"] == 1
    # silent cells: no execute_input, no counter step, no result (§4.5)
    assert await events_of(kernel.execute("3", silent=True)) == []
    events = await events_of(kernel.execute("4"))
    assert events[0] == {"type": "number_of_executions", "execution_count": 2}
    assert not kernel.router.busy


async def test_real_kernel_error_once_without_colour_and_queued_cell_aborted(kernel: Kernel) -> None:
    failing = kernel.execute("import time; time.sleep(0.3); raise ValueError('bad')")
    queued = kernel.execute("'never runs'")  # stop_on_error: the kernel aborts what was queued behind it
    failed = await events_of(failing)
    errors = [e for e in failed if e["type"] == "error"]
    assert len(errors) == 1 and (errors[0]["name"], errors[0]["value"]) == ("ValueError", "bad")
    assert "\x1b[" not in errors[0]["traceback"] and "ValueError" in errors[0]["traceback"]
    assert await events_of(queued) == [
        {"type": "error", "name": "ExecutionAborted", "value": "Execution was aborted", "traceback": ""}]
    assert [e["type"] for e in await events_of(kernel.execute("5"))] == ["number_of_executions", "result"]


async def test_real_kernel_interrupt_keeps_state(kernel: Kernel) -> None:
    await events_of(kernel.execute("kept = 7"))
    sleeping = kernel.execute("import time\nprint('asleep', flush=True)\ntime.sleep(60)")
    first = await asyncio.wait_for(sleeping.events.get(), 10)
    assert first["type"] == "number_of_executions"
    # interrupt once the cell really runs (a SIGINT before that is lost; the service retries, see contexts)
    assert (await asyncio.wait_for(sleeping.events.get(), 10))["text"] == "asleep\n"
    await kernel.interrupt()
    events = await events_of(sleeping, timeout=10)
    assert events[-1]["type"] == "error" and events[-1]["name"] == "KeyboardInterrupt"
    assert (await events_of(kernel.execute("kept")))[-1]["text"] == "7"


async def test_real_kernel_restart_ends_in_flight_and_wipes_state(kernel: Kernel) -> None:
    await events_of(kernel.execute("gone = 1"))
    sleeping = kernel.execute("import time; time.sleep(60)")
    await asyncio.wait_for(sleeping.events.get(), 10)
    kernel_id = kernel.id
    await kernel.restart()
    assert await events_of(sleeping) == [{
        "type": "error", "name": "UnexpectedEndOfExecution",
        "value": "Connection to the execution was closed before the execution was finished", "traceback": ""}]
    assert kernel.id == kernel_id
    events = await events_of(kernel.execute("gone"))
    assert events[0]["execution_count"] == 1 and events[-1]["name"] == "NameError"


async def test_missing_kernel_spec_is_a_clear_start_error(tmp_path: Path) -> None:
    k = Kernel("cobol", kernel_dirs(PREFIX), str(tmp_path), {})
    with pytest.raises(KernelStartError, match="No such kernel named cobol"):
        await k.start()



async def test_an_abandoned_execution_keeps_no_events() -> None:
    router = Router()
    ex = router.register("a")
    ex.discard = True  # the client went away; only the end still matters
    router.on_iopub(msg("stream", "a", {"name": "stdout", "text": "dropped\n"}))
    router.on_shell(msg("execute_reply", "a", {"status": "ok"}))
    router.on_iopub(msg("status", "a", {"execution_state": "idle"}))
    assert ex.done and drain(ex) == [END]
