"""filesystem.Filesystem RPC adapter: user and path resolution, cores in threads, protobuf conversion.

Also the legacy layer of spec/envd.md §9: callers whose User-Agent is exactly `connect-python` get
EntryInfo/FilesystemEvent reduced to the fields the old SDK knew, plus `X-E2B-Legacy-SDK: true`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from connectrpc.request import RequestContext

from ...api.rpc import request_user, with_keepalives
from ...auth.users import User
from ...errors import InvalidArgument
from ...paths import PathError, resolve_path
from ...spec.filesystem import filesystem_pb2 as pb
from ...state import SandboxState
from . import operations
from .entry_info import EntryInfo
from .watch import AsyncDirWatch, WatchEvent
from .offload import Offload
from .watchers import Watchers

LEGACY_USER_AGENT = "connect-python"


def entry_to_proto(entry: EntryInfo, legacy: bool = False) -> pb.EntryInfo:
    if legacy:
        return pb.EntryInfo(name=entry.name, type=int(entry.type), path=entry.path)
    message = pb.EntryInfo(
        name=entry.name,
        type=int(entry.type),
        path=entry.path,
        size=entry.size,
        mode=entry.mode,
        permissions=entry.permissions,
        owner=entry.owner,
        group=entry.group,
        metadata=dict(entry.metadata),
    )
    if entry.modified_ns:
        message.modified_time.FromNanoseconds(entry.modified_ns)
    if entry.symlink_target is not None:
        message.symlink_target = entry.symlink_target
    return message


def event_to_proto(event: WatchEvent, legacy: bool = False) -> pb.FilesystemEvent:
    message = pb.FilesystemEvent(name=event.name, type=int(event.type))
    if event.entry is not None and not legacy:
        message.entry.CopyFrom(entry_to_proto(event.entry))
    return message


def _keepalive() -> pb.WatchDirResponse:
    return pb.WatchDirResponse(keepalive=pb.WatchDirResponse.KeepAlive())


class FilesystemService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.watchers = Watchers()
        self.offload = Offload()

    async def close(self) -> None:
        await self.watchers.close()
        self.offload.close()

    def _resolve(self, ctx: RequestContext, raw: str) -> tuple[User, str]:
        user = request_user(ctx, self.state)
        try:
            return user, resolve_path(raw, user.home, user.name, self.state.default_workdir)
        except PathError as err:
            raise InvalidArgument(str(err)) from None

    @staticmethod
    def _legacy(ctx: RequestContext) -> bool:
        if ctx.request_headers.get("user-agent") != LEGACY_USER_AGENT:
            return False
        ctx.response_headers["x-e2b-legacy-sdk"] = "true"
        return True

    async def stat(self, request: pb.StatRequest, ctx: RequestContext) -> pb.StatResponse:
        legacy = self._legacy(ctx)
        _user, path = self._resolve(ctx, request.path)
        entry = await self.offload.bounded(operations.stat, path)
        return pb.StatResponse(entry=entry_to_proto(entry, legacy))

    async def make_dir(self, request: pb.MakeDirRequest, ctx: RequestContext) -> pb.MakeDirResponse:
        legacy = self._legacy(ctx)
        user, path = self._resolve(ctx, request.path)
        entry = await self.offload.bounded(operations.make_dir, path, user.uid, user.gid)
        return pb.MakeDirResponse(entry=entry_to_proto(entry, legacy))

    async def move(self, request: pb.MoveRequest, ctx: RequestContext) -> pb.MoveResponse:
        legacy = self._legacy(ctx)
        user, source = self._resolve(ctx, request.source)
        _user, destination = self._resolve(ctx, request.destination)
        entry = await self.offload.bounded(operations.move, source, destination, user.uid, user.gid)
        return pb.MoveResponse(entry=entry_to_proto(entry, legacy))

    async def list_dir(self, request: pb.ListDirRequest, ctx: RequestContext) -> pb.ListDirResponse:
        legacy = self._legacy(ctx)
        _user, path = self._resolve(ctx, request.path)
        entries = await self.offload.unbounded(operations.list_dir, path, request.depth)
        return pb.ListDirResponse(entries=[entry_to_proto(entry, legacy) for entry in entries])

    async def remove(self, request: pb.RemoveRequest, ctx: RequestContext) -> pb.RemoveResponse:
        self._legacy(ctx)
        _user, path = self._resolve(ctx, request.path)
        await self.offload.unbounded(operations.remove, path)
        return pb.RemoveResponse()

    async def watch_dir(self, request: pb.WatchDirRequest, ctx: RequestContext) -> AsyncIterator[pb.WatchDirResponse]:
        legacy = self._legacy(ctx)
        _user, path = self._resolve(ctx, request.path)
        watch = await AsyncDirWatch.open(
            path,
            recursive=request.recursive,
            include_entry=request.include_entry and not legacy,
            allow_network_mounts=request.allow_network_mounts,
        )
        try:
            yield pb.WatchDirResponse(start=pb.WatchDirResponse.StartEvent())
            responses = (
                pb.WatchDirResponse(filesystem=event_to_proto(event, legacy)) async for event in watch.events()
            )
            # Ends on deadline (deadline_exceeded), client gone (canceled) or watcher failure (internal).
            async for response in with_keepalives(responses, ctx, _keepalive):
                yield response
        finally:
            await watch.close()

    async def create_watcher(self, request: pb.CreateWatcherRequest, ctx: RequestContext) -> pb.CreateWatcherResponse:
        self._legacy(ctx)
        _user, path = self._resolve(ctx, request.path)
        watcher_id = await self.watchers.create(
            path,
            recursive=request.recursive,
            include_entry=request.include_entry,
            allow_network_mounts=request.allow_network_mounts,
        )
        return pb.CreateWatcherResponse(watcher_id=watcher_id)

    async def get_watcher_events(
        self, request: pb.GetWatcherEventsRequest, ctx: RequestContext
    ) -> pb.GetWatcherEventsResponse:
        legacy = self._legacy(ctx)
        request_user(ctx, self.state)
        events = await self.watchers.events(request.watcher_id)
        return pb.GetWatcherEventsResponse(events=[event_to_proto(event, legacy) for event in events])

    async def remove_watcher(self, request: pb.RemoveWatcherRequest, ctx: RequestContext) -> pb.RemoveWatcherResponse:
        self._legacy(ctx)
        request_user(ctx, self.state)
        await self.watchers.remove(request.watcher_id)
        return pb.RemoveWatcherResponse()
