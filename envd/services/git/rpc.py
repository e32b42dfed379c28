"""git.Git RPC adapter (proto/git/git.proto): user and path resolution, cores in git's threads, protobuf."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from connectrpc.request import RequestContext

from ...api.rpc import request_user, with_keepalives
from ...auth.users import User
from ...errors import InvalidArgument
from ...paths import PathError, resolve_path
from ...spec.git import git_pb2 as pb
from ...state import SandboxState
from . import branches, gitconfig, remotes, repository, worktree
from .credentials import Credentials, redact, split_url
from .progress import Progress
from .runner import GitRunner

RESET_MODES = {pb.RESET_MODE_MIXED: "mixed", pb.RESET_MODE_SOFT: "soft", pb.RESET_MODE_HARD: "hard"}
SCOPES = {pb.CONFIG_SCOPE_GLOBAL: "global", pb.CONFIG_SCOPE_LOCAL: "local", pb.CONFIG_SCOPE_SYSTEM: "system"}


def _credentials(request) -> Credentials | None:
    if not request.HasField("credentials"):
        return None
    creds = request.credentials
    if not creds.username:
        raise InvalidArgument("credentials need a username (put a token in the password)")
    return Credentials(creds.username, creds.password)


def _opt(request, name: str) -> str | None:
    return getattr(request, name) if request.HasField(name) else None


def _progress(p: Progress) -> pb.Progress:
    return pb.Progress(message=p.message, stage=p.stage, current=p.current, total=p.total)


def _ref_updates(updates: list[remotes.RefUpdate]) -> list[pb.RefUpdate]:
    return [pb.RefUpdate(ref=u.ref, old_sha=u.old_sha, new_sha=u.new_sha) for u in updates]


def _signature(s: worktree.Signature) -> pb.Signature:
    message = pb.Signature(name=s.name, email=s.email)
    message.time.FromSeconds(s.time_s)
    return message


class GitService:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.runner = GitRunner()

    async def close(self) -> None:
        self.runner.close()

    def _resolve(self, ctx: RequestContext, raw: str) -> tuple[User, str]:
        user = request_user(ctx, self.state)
        return user, self._path(user, raw)

    def _path(self, user: User, raw: str) -> str:
        try:
            return resolve_path(raw, user.home, user.name, self.state.default_workdir)
        except PathError as err:
            raise InvalidArgument(str(err)) from None

    async def _call(self, ctx: RequestContext, raw_path: str, what: str, fn: Callable, *args: object):
        user, path = self._resolve(ctx, raw_path)
        return await self.runner.run(user, f"{what} in '{path}'", fn, path, user.home, *args)

    async def _stream(self, ctx: RequestContext, user: User, what: str, fn: Callable, args: tuple,
                      wrap: Callable, keepalive: Callable) -> AsyncIterator:
        events = self.runner.stream(user, what, fn, *args)

        async def converted():
            async for item in events:
                yield wrap(progress=_progress(item)) if isinstance(item, Progress) else wrap(done=item)

        async for response in with_keepalives(converted(), ctx, keepalive):
            yield response

    # --- repositories -----------------------------------------------------------------------------------------

    async def clone(self, request: pb.CloneRequest, ctx: RequestContext) -> AsyncIterator[pb.CloneResponse]:
        user = request_user(ctx, self.state)
        if not request.url:
            raise InvalidArgument("url is required")
        clean_url, _ = split_url(request.url)
        raw_path = request.path or repository.default_clone_dir(clean_url)
        path = self._path(user, raw_path)

        def run(progress):
            head, branch = repository.clone(request.url, path, user.home, _opt(request, "branch"), request.depth,
                                            _credentials(request), request.bare, progress)
            return pb.CloneResult(path=path, head=head, branch=branch)

        async for response in self._stream(
            ctx, user, f"clone of '{redact(clean_url)}' into '{path}'", run, (), pb.CloneResponse,
            lambda: pb.CloneResponse(keepalive=pb.KeepAlive()),
        ):
            yield response

    async def init(self, request: pb.InitRequest, ctx: RequestContext) -> pb.InitResponse:
        path = await self._call(ctx, request.path, "init", repository.init, request.bare,
                                _opt(request, "initial_branch"))
        return pb.InitResponse(path=path)

    # --- working tree -----------------------------------------------------------------------------------------

    async def status(self, request: pb.StatusRequest, ctx: RequestContext) -> pb.StatusResponse:
        st = await self._call(ctx, request.path, "status", worktree.status)
        response = pb.StatusResponse(
            branch=st.branch, detached=st.detached, head=st.head, ahead=st.ahead, behind=st.behind,
            files=[pb.FileStatus(path=f.path, index=int(f.index), worktree=int(f.worktree)) for f in st.files],
        )
        if st.upstream is not None:
            response.upstream = st.upstream
        return response

    async def add(self, request: pb.AddRequest, ctx: RequestContext) -> pb.AddResponse:
        await self._call(ctx, request.path, "add", worktree.add, list(request.paths))
        return pb.AddResponse()

    async def commit(self, request: pb.CommitRequest, ctx: RequestContext) -> pb.CommitResponse:
        sha = await self._call(ctx, request.path, "commit", worktree.commit, request.message,
                               _opt(request, "author_name"), _opt(request, "author_email"), request.allow_empty)
        return pb.CommitResponse(sha=sha)

    async def log(self, request: pb.LogRequest, ctx: RequestContext) -> pb.LogResponse:
        commits = await self._call(ctx, request.path, "log", worktree.log, _opt(request, "ref"), request.max_count)
        return pb.LogResponse(commits=[
            pb.CommitInfo(sha=c.sha, message=c.message, author=_signature(c.author),
                          committer=_signature(c.committer), parents=c.parents)
            for c in commits
        ])

    async def reset(self, request: pb.ResetRequest, ctx: RequestContext) -> pb.ResetResponse:
        mode = RESET_MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"unknown reset mode {request.mode}")
        head = await self._call(ctx, request.path, "reset", worktree.reset, mode, _opt(request, "target"),
                                list(request.paths))
        return pb.ResetResponse(head=head)

    async def restore(self, request: pb.RestoreRequest, ctx: RequestContext) -> pb.RestoreResponse:
        await self._call(ctx, request.path, "restore", worktree.restore, list(request.paths), request.staged,
                         request.worktree, _opt(request, "source"))
        return pb.RestoreResponse()

    # --- branches ---------------------------------------------------------------------------------------------

    async def list_branches(self, request: pb.ListBranchesRequest, ctx: RequestContext) -> pb.ListBranchesResponse:
        found, current = await self._call(ctx, request.path, "branch listing", branches.list_branches)
        return pb.ListBranchesResponse(current=current, branches=[
            pb.Branch(name=b.name, commit=b.commit, current=b.current, upstream=b.upstream) for b in found
        ])

    async def create_branch(self, request: pb.CreateBranchRequest, ctx: RequestContext) -> pb.CreateBranchResponse:
        await self._call(ctx, request.path, f"creating branch '{request.name}'", branches.create_branch,
                         request.name, _opt(request, "start_point"), request.checkout)
        return pb.CreateBranchResponse()

    async def checkout_branch(
        self, request: pb.CheckoutBranchRequest, ctx: RequestContext
    ) -> pb.CheckoutBranchResponse:
        await self._call(ctx, request.path, f"checkout of '{request.name}'", branches.checkout_branch, request.name)
        return pb.CheckoutBranchResponse()

    async def delete_branch(self, request: pb.DeleteBranchRequest, ctx: RequestContext) -> pb.DeleteBranchResponse:
        await self._call(ctx, request.path, f"deleting branch '{request.name}'", branches.delete_branch,
                         request.name, request.force)
        return pb.DeleteBranchResponse()

    # --- remotes ----------------------------------------------------------------------------------------------

    async def list_remotes(self, request: pb.ListRemotesRequest, ctx: RequestContext) -> pb.ListRemotesResponse:
        found = await self._call(ctx, request.path, "remote listing", remotes.list_remotes)
        return pb.ListRemotesResponse(remotes=[pb.Remote(name=r.name, url=r.url) for r in found])

    async def add_remote(self, request: pb.AddRemoteRequest, ctx: RequestContext) -> pb.AddRemoteResponse:
        await self._call(ctx, request.path, f"adding remote '{request.name}'", remotes.add_remote, request.name,
                         request.url, request.overwrite)
        return pb.AddRemoteResponse()

    async def remove_remote(self, request: pb.RemoveRemoteRequest, ctx: RequestContext) -> pb.RemoveRemoteResponse:
        await self._call(ctx, request.path, f"removing remote '{request.name}'", remotes.remove_remote, request.name)
        return pb.RemoveRemoteResponse()

    async def fetch(self, request: pb.FetchRequest, ctx: RequestContext) -> AsyncIterator[pb.FetchResponse]:
        user, path = self._resolve(ctx, request.path)
        args = (path, user.home, _opt(request, "remote"), _credentials(request), request.depth)
        async for response in self._stream(
            ctx, user, f"fetch in '{path}'", remotes.fetch, args,
            lambda progress=None, done=None: pb.FetchResponse(
                progress=progress, done=None if done is None else pb.FetchResult(updated=_ref_updates(done))),
            lambda: pb.FetchResponse(keepalive=pb.KeepAlive()),
        ):
            yield response

    async def pull(self, request: pb.PullRequest, ctx: RequestContext) -> AsyncIterator[pb.PullResponse]:
        user, path = self._resolve(ctx, request.path)
        args = (path, user.home, _opt(request, "remote"), _opt(request, "branch"), _credentials(request),
                request.ff_only)
        async for response in self._stream(
            ctx, user, f"pull in '{path}'", remotes.pull, args,
            lambda progress=None, done=None: pb.PullResponse(
                progress=progress,
                done=None if done is None else pb.PullResult(
                    head=done.head, fast_forward=done.fast_forward, up_to_date=done.up_to_date)),
            lambda: pb.PullResponse(keepalive=pb.KeepAlive()),
        ):
            yield response

    async def push(self, request: pb.PushRequest, ctx: RequestContext) -> AsyncIterator[pb.PushResponse]:
        user, path = self._resolve(ctx, request.path)
        args = (path, user.home, _opt(request, "remote"), _opt(request, "branch"), _credentials(request),
                request.force, request.set_upstream)
        async for response in self._stream(
            ctx, user, f"push in '{path}'", remotes.push, args,
            lambda progress=None, done=None: pb.PushResponse(
                progress=progress, done=None if done is None else pb.PushResult(updated=_ref_updates(done))),
            lambda: pb.PushResponse(keepalive=pb.KeepAlive()),
        ):
            yield response

    # --- config -----------------------------------------------------------------------------------------------

    def _config_target(self, ctx: RequestContext, request) -> tuple[User, str, str]:
        scope = SCOPES.get(request.scope)
        if scope is None:
            raise InvalidArgument(f"unknown config scope {request.scope}")
        user = request_user(ctx, self.state)
        if scope == "local" and not request.path:
            raise InvalidArgument("the local config scope needs the repository path")
        return user, scope, self._path(user, request.path) if request.path else ""

    async def get_config(self, request: pb.GetConfigRequest, ctx: RequestContext) -> pb.GetConfigResponse:
        user, scope, path = self._config_target(ctx, request)
        value = await self.runner.run(user, f"reading {scope} config '{request.key}'", gitconfig.get_config, scope,
                                      path, user.home, request.key)
        return pb.GetConfigResponse(value=value)

    async def set_config(self, request: pb.SetConfigRequest, ctx: RequestContext) -> pb.SetConfigResponse:
        user, scope, path = self._config_target(ctx, request)
        await self.runner.run(user, f"writing {scope} config '{request.key}'", gitconfig.set_config, scope, path,
                              user.home, request.key, request.value)
        return pb.SetConfigResponse()
