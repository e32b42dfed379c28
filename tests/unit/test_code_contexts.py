"""CodeService on a real ipykernel: what a client leaving does (interrupt, env restore: Q5), queueing in one
context (keepalives while queued: Q2; leaving the queue interrupts nothing), sandbox env vars following envd's
state (§4.7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from envd.services.code import contexts
from envd.services.code.contexts import CodeService
from envd.state import SandboxState

PREFIX = "/opt/envd-kernels"

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def service(tmp_path: Path):
    if not Path(PREFIX, "share/jupyter/kernels/python3/kernel.json").exists():
        pytest.fail("the python kernel is not installed: run `make kernels`")
    state = SandboxState()
    svc = CodeService(state, PREFIX, str(tmp_path))
    yield svc
    await svc.close()


async def run(svc: CodeService, context, code: str, env_vars=None) -> list[dict]:
    return [event async for event in svc.execute(context, code, env_vars)]


def text_of(events: list[dict]) -> str | None:
    return next((e["text"] for e in events if e["type"] == "result" and e["is_main_result"]), None)


async def test_client_leaving_interrupts_keeps_state_and_restores_env(service: CodeService) -> None:
    context = await service.create("python", None)
    await run(service, context, "kept = 5")
    events = service.execute(context, "import time; time.sleep(60)", {"LEFT_BEHIND": "1"})
    assert (await anext(events))["type"] == "number_of_executions"
    await events.aclose()  # the client went away mid-cell
    started = asyncio.get_running_loop().time()
    after = await asyncio.wait_for(run(service, context, "import os; (kept, os.getenv('LEFT_BEHIND', 'unset'))"), 10)
    assert text_of(after) == "(5, 'unset')"
    assert asyncio.get_running_loop().time() - started < 5


async def test_queued_execution_gets_keepalives_and_leaving_the_queue_interrupts_nothing(
    service: CodeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contexts, "KEEPALIVE_SECONDS", 0.3)
    context = await service.create("python", None)
    first = asyncio.create_task(run(service, context, "import time; time.sleep(1.5); 'first'"))
    await asyncio.sleep(0.2)
    queued = service.execute(context, "'queued'")
    assert await anext(queued) == {"type": "keepalive"}  # nothing sent to the kernel yet
    await queued.aclose()
    assert text_of(await first) == "first"  # not interrupted by the queued client leaving
    assert text_of(await run(service, context, "'next'")) == "next"


async def test_sandbox_env_vars_follow_envd_state(service: CodeService) -> None:
    context = await service.create("python", None)
    read = "import os; (os.getenv('SBX_A', '-'), os.getenv('SBX_B', '-'))"
    service.state.envs.replace_user({"SBX_A": "1"})
    assert text_of(await run(service, context, read)) == "('1', '-')"
    service.state.envs.replace_user({"SBX_B": "2"})  # a later /init replaces the set
    assert text_of(await run(service, context, read)) == "('-', '2')"
    assert text_of(await run(service, context, read, {"SBX_B": "x", "SBX_A": "y"})) == "('y', 'x')"
    assert text_of(await run(service, context, read)) == "('-', '2')"
    # the counter saw only the user's cells
    events = await run(service, context, "1")
    assert events[0] == {"type": "number_of_executions", "execution_count": 5}


async def test_language_defaults_and_resolution_errors(service: CodeService) -> None:
    from envd.errors import Internal, InvalidArgument, NotFound

    first, second = await asyncio.gather(service.resolve(None, "Python"), service.resolve(None, None))
    assert first is second and service.ready.is_set()  # concurrent first requests create one default
    assert service.get("default") is first
    with pytest.raises(InvalidArgument, match="Only one of context_id or language can be provided"):
        await service.resolve(first.id, "python")
    with pytest.raises(NotFound, match="Context nope not found"):
        await service.resolve("nope", None)
    with pytest.raises(Internal, match="Failed to create context: No such kernel named cobol"):
        await service.resolve(None, "cobol")
    assert service.list() == [{"id": first.id, "language": "python", "cwd": "/home/user"}]
