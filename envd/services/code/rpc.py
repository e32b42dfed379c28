"""code.Interpreter RPC adapter (proto/code/code.proto): the same CodeService as the HTTP API on port 49999.

The HTTP API's kernels run as root (code-interpreter.md §5.1); here a context runs as the user asked for, by
default the request's user (Basic auth, else the default user, as for processes), and so do the per-user
default contexts an Execute without a context uses. Errors are status codes, not the HTTP API's in-band or
500 quirks: unknown language and bad input -> invalid_argument, unknown context -> not_found.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from connectrpc.request import RequestContext
from google.protobuf import json_format, struct_pb2

from ...api.rpc import request_user, with_keepalives
from ...auth.users import UnknownUser, User, lookup_user
from ...errors import InvalidArgument
from ...paths import PathError, resolve_path
from ...spec.code import code_pb2 as pb
from ...state import SandboxState
from .contexts import CodeService, Context, UnknownLanguage
from .results import MIME_KEYS

_STRING_KEYS = ("text", "html", "markdown", "svg", "png", "jpeg", "pdf", "latex", "javascript")


def _value(obj: Any) -> struct_pb2.Value:
    return json_format.ParseDict(obj, struct_pb2.Value())


def result_to_proto(event: dict[str, Any]) -> pb.Result:
    result = pb.Result(is_main_result=bool(event.get("is_main_result")))
    for _mime, key in MIME_KEYS:
        if key not in event:
            continue
        value = event[key]
        if key in _STRING_KEYS:
            setattr(result, key, value if isinstance(value, str) else str(value))
        elif key == "json":
            result.json.CopyFrom(_value(value))
        elif isinstance(value, dict):  # data, chart: objects (§2.5, §3); {} stays present
            getattr(result, key).SetInParent()
            getattr(result, key).update(value)
        else:  # a custom formatter's non-object: kept, under its MIME type
            result.extra["e2b/" + key].CopyFrom(_value(value))
    for mime, value in (event.get("extra") or {}).items():
        result.extra[mime].CopyFrom(_value(value))
    return result


def event_to_proto(event: dict[str, Any]) -> pb.ExecuteResponse:
    """One §1.4 event of the core -> ExecuteResponse."""
    kind = event["type"]
    response = pb.ExecuteResponse()
    if kind in ("stdout", "stderr"):
        output = getattr(response, kind)
        output.text = event["text"]
        output.timestamp.FromDatetime(datetime.fromisoformat(event["timestamp"]))
    elif kind == "result":
        response.result.CopyFrom(result_to_proto(event))
    elif kind == "error":
        response.error.name, response.error.value = event["name"], event["value"]
        response.error.traceback = event["traceback"]
    elif kind == "number_of_executions":
        response.execution_count.execution_count = int(event.get("execution_count") or 0)
    elif kind == "end_of_execution":
        response.end.SetInParent()
    else:
        response.keepalive.SetInParent()
    return response


def context_to_proto(context: Context) -> pb.Context:
    return pb.Context(id=context.id, language=context.language, cwd=context.cwd, user=context.user)


def _keepalive() -> pb.ExecuteResponse:
    response = pb.ExecuteResponse()
    response.keepalive.SetInParent()
    return response


async def _within(events: AsyncIterator[dict[str, Any]], timeout_ms: int) -> AsyncIterator[dict[str, Any]]:
    """The events until `timeout_ms` (0: no limit); then the execution is abandoned (the kernel interrupted)
    and the stream ends in-band with a TimeoutError, so the client keeps the output it already got."""
    if not timeout_ms:
        async for event in events:
            yield event
        return
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    iterator = events.__aiter__()
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                event = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            break
        yield event
    await events.aclose()  # cancelled mid-wait it is closed already; this only makes sure
    yield {"type": "error", "name": "TimeoutError", "traceback": "",
           "value": f"Execution timed out after {timeout_ms} ms; the kernel was interrupted"}
    yield {"type": "end_of_execution"}


def _unknown_language(language: str, err: UnknownLanguage) -> InvalidArgument:
    # the kernel manager's words ("No such kernel named ... (looked in ...)"), without the HTTP API's prefix
    return InvalidArgument(f"unknown language '{language}': {err.__cause__ or err.message}")


def _required_id(context_id: str) -> str:
    if not context_id:
        raise InvalidArgument("context_id is empty")
    return context_id


class CodeRpc:
    def __init__(self, state: SandboxState, service: CodeService) -> None:
        self.state = state
        self.service = service

    async def _create(self, language: str, cwd: str | None, user: User) -> Context:
        try:
            return await self.service.create(language, cwd, user)
        except UnknownLanguage as err:
            raise _unknown_language(language, err) from None

    async def execute(self, request: pb.ExecuteRequest, ctx: RequestContext) -> AsyncIterator[pb.ExecuteResponse]:
        user = request_user(ctx, self.state)
        if not request.code:
            raise InvalidArgument("code is empty")
        target = request.WhichOneof("target")
        try:
            context = await self.service.resolve(
                request.context_id if target == "context_id" else None,
                request.language if target == "language" else None,
                user,
            )
        except UnknownLanguage as err:
            raise _unknown_language(request.language, err) from None
        events = self.service.execute(context, request.code, dict(request.env_vars))
        # The core's 5 s keepalives (§1.4) are for HTTP proxies; RPC streams send theirs per keepalive-ping-interval.
        responses = (
            event_to_proto(event) async for event in _within(events, request.timeout_ms) if event["type"] != "keepalive"
        )
        try:
            # Ends early on the call's deadline (deadline_exceeded) or the client leaving (canceled): closing
            # `events` then interrupts the kernel, as an HTTP client's disconnect does (§1.4).
            async for response in with_keepalives(responses, ctx, _keepalive):
                yield response
        finally:
            await events.aclose()  # closing the generator expression would not close its source

    async def create_context(self, request: pb.CreateContextRequest, ctx: RequestContext) -> pb.CreateContextResponse:
        user = request_user(ctx, self.state)
        if request.user:
            try:
                user = lookup_user(request.user)
            except UnknownUser:
                raise InvalidArgument(f"unknown user '{request.user}'") from None
        try:
            cwd = resolve_path(request.cwd, user.home, user.name, self.state.default_workdir)
        except PathError as err:
            raise InvalidArgument(str(err)) from None
        if not os.path.isdir(cwd):
            raise InvalidArgument(f"cwd '{cwd}' is not a directory")
        context = await self._create(request.language, cwd, user)
        return pb.CreateContextResponse(context=context_to_proto(context))

    async def list_contexts(self, request: pb.ListContextsRequest, ctx: RequestContext) -> pb.ListContextsResponse:
        request_user(ctx, self.state)
        return pb.ListContextsResponse(contexts=[context_to_proto(c) for c in self.service.contexts()])

    async def remove_context(self, request: pb.RemoveContextRequest, ctx: RequestContext) -> pb.RemoveContextResponse:
        request_user(ctx, self.state)
        await self.service.remove(_required_id(request.context_id))
        return pb.RemoveContextResponse()

    async def restart_context(
        self, request: pb.RestartContextRequest, ctx: RequestContext
    ) -> pb.RestartContextResponse:
        request_user(ctx, self.state)
        await self.service.restart(_required_id(request.context_id))
        return pb.RestartContextResponse()

    async def interrupt(self, request: pb.InterruptRequest, ctx: RequestContext) -> pb.InterruptResponse:
        request_user(ctx, self.state)
        return pb.InterruptResponse(interrupted=await self.service.interrupt(_required_id(request.context_id)))
