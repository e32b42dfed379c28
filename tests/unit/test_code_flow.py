"""Output budget of a kernel (flow.py) and how executions charge and release it (routing.py)."""

from __future__ import annotations

import asyncio

import pytest

from envd.services.code.flow import OutputBudget, event_size
from envd.services.code.routing import END, Router


def recording_budget(high: int, low: int) -> tuple[OutputBudget, list[str]]:
    calls: list[str] = []
    return OutputBudget(lambda: calls.append("pause"), lambda: calls.append("resume"), high, low), calls


def test_pauses_above_high_once_and_resumes_at_low() -> None:
    budget, calls = recording_budget(high=100, low=40)
    budget.add(60)
    budget.add(60)
    budget.add(60)
    assert calls == ["pause"] and budget.paused
    budget.release(100)
    assert calls == ["pause"]  # 80 left: still above low
    budget.release(40)
    assert calls == ["pause", "resume"] and not budget.paused and budget.buffered == 40


def test_explicit_resume_lets_the_next_overflow_pause_again() -> None:
    budget, calls = recording_budget(high=10, low=5)
    budget.add(20)
    budget.resume()  # e.g. an interrupt must reach a running kernel
    budget.add(1)
    assert calls == ["pause", "resume", "pause"] and budget.pauses == 2


def stdout(text: str, msg_id: str) -> dict:
    return {"msg_type": "stream", "parent_header": {"msg_id": msg_id}, "header": {},
            "content": {"name": "stdout", "text": text}}


@pytest.mark.asyncio
async def test_reading_events_releases_the_budget_and_abandoning_drops_them() -> None:
    budget, calls = recording_budget(high=250_000, low=150_000)  # pause at the 3rd event, resume at 1 left
    router = Router(budget)
    execution = router.register("m1")
    for _ in range(4):
        router.on_iopub(stdout("x" * 100_000, "m1"))
    assert calls == ["pause"]
    first = await execution.next_event()
    assert first["text"] == "x" * 100_000 and 3 * 100_000 < budget.buffered < 3 * event_size(first) + 10
    await execution.next_event()
    assert calls == ["pause"]
    await execution.next_event()
    assert calls == ["pause", "resume"]
    router.on_iopub(stdout("y" * 1000, "m1"))
    execution.abandon()
    assert budget.buffered == 0
    router.on_iopub(stdout("z", "m1"))  # after abandoning, output is dropped, not charged
    assert budget.buffered == 0 and execution.events.empty()
    execution.finish()
    assert await asyncio.wait_for(execution.next_event(), 1) is END


def test_silent_executions_are_not_charged() -> None:
    budget, _ = recording_budget(high=10, low=5)
    router = Router(budget)
    router.register("internal", silent=True)
    router.on_iopub(stdout("x" * 100, "internal"))
    assert budget.buffered == 0
