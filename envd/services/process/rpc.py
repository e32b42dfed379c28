"""process.Process RPC adapter: protobuf in and out, user and deadlines from the call, the table does the rest.

Streams (Start, Connect) relay a subscriber's queue themselves rather than through `api.rpc.with_keepalives`:
that helper runs one Task per event, which costs more than the rest of a data event's path. Here an event
already queued is taken synchronously; only an idle stream waits (on one future, with the keepalive or
deadline timer).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext

from ...api.codecs import register_json_encoder
from ...api.disconnect import disconnected
from ...api.rpc import keepalive_interval, request_user
from ...errors import FailedPrecondition, InvalidArgument, Unimplemented
from ...spec.process import process_pb2 as pb
from ...state import SandboxState
from .exit_status import ExitStatus
from .fanout import Chunk, Closed, Subscriber
from .process import ProcessConfig, ProcessHandle
from .spawn import TerminalSize
from .table import Ended, ProcessTable, StartOptions

try:  # SIMD base64: 40x binascii on output events, the JSON stream's main cost
    from pybase64 import b64encode
except ImportError:  # pragma: no cover
    from base64 import b64encode

R = TypeVar("R", pb.StartResponse, pb.ConnectResponse)

_SIGNALS = {pb.SIGNAL_SIGKILL: signal.SIGKILL, pb.SIGNAL_SIGTERM: signal.SIGTERM}
_NO_SELECTOR = "invalid input type <nil>"


def config_from_proto(message: pb.ProcessConfig) -> ProcessConfig:
    return ProcessConfig(
        cmd=message.cmd,
        args=tuple(message.args),
        envs=dict(message.envs),
        cwd=message.cwd if message.HasField("cwd") else None,
    )


def config_to_proto(config: ProcessConfig) -> pb.ProcessConfig:
    message = pb.ProcessConfig(cmd=config.cmd, args=config.args, envs=config.envs)
    if config.cwd is not None:
        message.cwd = config.cwd
    return message


def _selector(message: pb.ProcessSelector) -> tuple[int | None, str | None]:
    which = message.WhichOneof("selector")
    if which == "pid":
        return message.pid, None
    if which == "tag":
        return None, message.tag
    raise Unimplemented(_NO_SELECTOR)


def _size(message: pb.PTY) -> TerminalSize:
    return TerminalSize(cols=message.size.cols, rows=message.size.rows)


def _start_event(response_type: type[R], pid: int) -> R:
    response = response_type()
    response.event.start.pid = pid
    return response


def _end_event(response_type: type[R], status: ExitStatus) -> R:
    response = response_type()
    end = response.event.end
    end.exit_code = status.exit_code
    end.exited = status.exited
    end.status = status.status
    if status.error is not None:
        end.error = status.error
    return response


def _data_event(response_type: type[R], chunk: Chunk) -> R:
    # Set in place: building the nested messages and passing them in would copy the bytes once per level.
    response = response_type()
    data = response.event.data
    stream = chunk.stream
    if stream == "stdout":
        data.stdout = chunk.data
    elif stream == "stderr":
        data.stderr = chunk.data
    else:
        data.pty = chunk.data
    return response


def _data_event_json(message: pb.StartResponse | pb.ConnectResponse) -> bytes | None:
    """Canonical JSON of a data event (§4.3: bytes as padded base64), without json_format's walk and escaping."""
    event = message.event
    if event.WhichOneof("event") != "data":
        return None
    data = event.data
    stream = data.WhichOneof("output")
    if stream is None:
        return None
    return b'{"event":{"data":{"%s":"%s"}}}' % (stream.encode(), b64encode(getattr(data, stream)))


register_json_encoder(pb.StartResponse, _data_event_json)
register_json_encoder(pb.ConnectResponse, _data_event_json)


def _keepalive(response_type: type[R]) -> R:
    response = response_type()
    response.event.keepalive.SetInParent()
    return response


def remaining_ms(ctx: RequestContext) -> float | None:
    """Milliseconds left before the call's deadline, None without one (Connect-Timeout-Ms 0: none, §6.2)."""
    raw = ctx.request_headers.get("connect-timeout-ms")
    if raw is not None:
        try:
            if int(raw) == 0:
                return None
        except ValueError:  # connectrpc refuses it first; kept so the rule stands here too
            raise InvalidArgument(f"invalid Connect-Timeout-Ms header: '{raw}'") from None
    return ctx.timeout_ms  # Connect-Timeout-Ms or gRPC's grpc-timeout, less the time already spent


class ProcessService:
    def __init__(self, state: SandboxState, table: ProcessTable | None = None, cgroups=None) -> None:
        self.state = state
        self.table = table or ProcessTable(state, cgroups)

    async def close(self) -> None:
        await self.table.close()

    # -- streams ------------------------------------------------------------------------------------

    async def start(self, request: pb.StartRequest, ctx: RequestContext) -> AsyncIterator[pb.StartResponse]:
        user = request_user(ctx, self.state)
        remaining = remaining_ms(ctx)
        # §6.6: the call's deadline is also the process's lifetime (for gRPC callers too, §6.6 last note).
        lifetime = max(remaining, 1.0) / 1000 if remaining is not None else None
        options = StartOptions(
            config=config_from_proto(request.process),
            user=user,
            pty=_size(request.pty) if request.HasField("pty") else None,
            tag=request.tag if request.HasField("tag") else None,
            stdin=request.stdin if request.HasField("stdin") else True,
            lifetime=lifetime,
        )
        handle, subscriber = await self.table.start(options)
        async for response in self._relay(pb.StartResponse, handle.pid, subscriber, ctx, remaining):
            yield response

    async def connect(self, request: pb.ConnectRequest, ctx: RequestContext) -> AsyncIterator[pb.ConnectResponse]:
        pid, tag = _selector(request.process)
        found = self.table.find(pid, tag)
        if isinstance(found, Ended):
            # §6.7: ended within the last 30 s: its start and its end, nothing else.
            yield _start_event(pb.ConnectResponse, found.pid)
            yield _end_event(pb.ConnectResponse, found.status)
            return
        subscriber = found.subscribe()
        remaining = remaining_ms(ctx)
        async for response in self._relay(pb.ConnectResponse, found.pid, subscriber, ctx, remaining):
            yield response

    async def _relay(
        self,
        response_type: type[R],
        pid: int,
        subscriber: Subscriber[ExitStatus],
        ctx: RequestContext,
        remaining_ms: float | None,
    ) -> AsyncIterator[R]:
        """start, then data/keepalives, then end (§6.5); ends early on deadline or client disconnect only."""
        loop = asyncio.get_running_loop()
        interval = keepalive_interval(ctx)
        deadline = loop.time() + remaining_ms / 1000 if remaining_ms is not None else None
        gone = asyncio.ensure_future(disconnected().wait())
        gone.add_done_callback(lambda _: subscriber.interrupt(ConnectError(Code.CANCELED, "client disconnected")))
        make_data: Callable[[type[R], Chunk], R] = _data_event
        try:
            yield _start_event(response_type, pid)
            while True:
                item = subscriber.get_nowait()
                if item is None:
                    timeout = interval
                    if deadline is not None:
                        timeout = min(timeout, deadline - loop.time())
                    try:
                        item = await subscriber.get(max(timeout, 0))
                    except Closed as err:
                        raise ConnectError(Code.UNAVAILABLE, str(err)) from None
                # The lifetime kill's end must not beat the deadline error (SDK: timeout, not exit -1).
                if deadline is not None and loop.time() >= deadline:
                    raise ConnectError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
                if item is None:
                    yield _keepalive(response_type)
                elif type(item) is Chunk:
                    yield make_data(response_type, item)
                else:
                    yield _end_event(response_type, item)
                    return
        finally:
            gone.cancel()
            subscriber.close()

    # -- unary --------------------------------------------------------------------------------------

    async def list(self, request: pb.ListRequest, ctx: RequestContext) -> pb.ListResponse:
        processes = []
        for handle in self.table:
            info = pb.ProcessInfo(config=config_to_proto(handle.config), pid=handle.pid)
            if handle.tag is not None:
                info.tag = handle.tag
            processes.append(info)
        return pb.ListResponse(processes=processes)

    async def send_input(self, request: pb.SendInputRequest, ctx: RequestContext) -> pb.SendInputResponse:
        handle = self.table.get(*_selector(request.process))
        await _write_input(handle, request.input)
        return pb.SendInputResponse()

    async def stream_input(
        self, requests: AsyncIterator[pb.StreamInputRequest], ctx: RequestContext
    ) -> pb.StreamInputResponse:
        handle: ProcessHandle | None = None
        async for request in requests:  # strictly in message order (§6.10)
            which = request.WhichOneof("event")
            if which == "start":
                handle = self.table.get(*_selector(request.start.process))
            elif which == "data":
                if handle is None:
                    raise FailedPrecondition("no process selected: send a start event before data")
                await _write_input(handle, request.data.input)
            elif which != "keepalive":
                raise Unimplemented("invalid event type <nil>")
        return pb.StreamInputResponse()

    async def send_signal(self, request: pb.SendSignalRequest, ctx: RequestContext) -> pb.SendSignalResponse:
        handle = self.table.get(*_selector(request.process))
        signum = _SIGNALS.get(request.signal)
        if signum is None:
            try:
                name = pb.Signal.Name(request.signal)
            except ValueError:
                name = str(request.signal)
            raise Unimplemented(f"invalid signal: {name}")
        handle.send_signal(signum)
        return pb.SendSignalResponse()

    async def close_stdin(self, request: pb.CloseStdinRequest, ctx: RequestContext) -> pb.CloseStdinResponse:
        self.table.get(*_selector(request.process)).close_stdin()
        return pb.CloseStdinResponse()

    async def update(self, request: pb.UpdateRequest, ctx: RequestContext) -> pb.UpdateResponse:
        handle = self.table.get(*_selector(request.process))
        if request.HasField("pty"):
            handle.resize(_size(request.pty))
        return pb.UpdateResponse()


async def _write_input(handle: ProcessHandle, message: pb.ProcessInput) -> None:
    which = message.WhichOneof("input")
    if which == "stdin":
        await handle.write_stdin(message.stdin)
    elif which == "pty":
        await handle.write_pty(message.pty)
    else:
        raise Unimplemented(_NO_SELECTOR)
