"""Remotes and the network operations: list/add/remove, fetch, pull, push."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from .branches import HEADS, current_branch
from .credentials import Credentials, has_credentials, transport_kwargs
from .progress import ProgressLines
from .repository import open_repository
from .revisions import upstream_of
from .worktree import conflicted_paths


@dataclass(frozen=True)
class Remote:
    name: str
    url: str


@dataclass(frozen=True)
class RefUpdate:
    ref: str
    old_sha: str
    new_sha: str


@dataclass(frozen=True)
class PullResult:
    head: str
    fast_forward: bool
    up_to_date: bool


def list_remotes(path: str, home: str) -> list[Remote]:
    with open_repository(path) as repo:
        config = repo.get_config()
        remotes = []
        for section in config.sections():
            if len(section) == 2 and section[0] == b"remote":
                try:
                    url = config.get(section, b"url").decode()
                except KeyError:
                    url = ""
                remotes.append(Remote(section[1].decode(), url))
        return sorted(remotes, key=lambda r: r.name)


def add_remote(path: str, home: str, name: str, url: str, overwrite: bool) -> None:
    from dulwich import porcelain
    from dulwich.porcelain import RemoteExists

    if not name or not url:
        raise InvalidArgument("a remote needs a name and a URL")
    if has_credentials(url):
        raise InvalidArgument("the remote URL embeds credentials, which would be stored in .git/config: "
                              "pass them per call instead")
    with open_repository(path) as repo:
        try:
            porcelain.remote_add(repo, name, url)
        except RemoteExists:
            if not overwrite:
                raise AlreadyExists(f"remote '{name}' already exists") from None
            config = repo.get_config()
            config.set((b"remote", name.encode()), b"url", url.encode())
            config.write_to_path()


def remove_remote(path: str, home: str, name: str) -> None:
    from dulwich import porcelain

    with open_repository(path) as repo:
        _check_remote(repo, name)
        porcelain.remote_remove(repo, name)


def _check_remote(repo, name: str) -> None:
    if not repo.get_config().has_section((b"remote", name.encode())):
        raise NotFound(f"remote '{name}' not found")


def _default_remote(repo) -> str:
    branch = current_branch(repo)
    if branch:
        try:
            return repo.get_config().get((b"branch", branch.encode()), b"remote").decode()
        except KeyError:
            pass
    return "origin"


def _tracking(repo, remote: str) -> dict[bytes, bytes]:
    base = b"refs/remotes/" + remote.encode() + b"/"
    return {base + name: repo.refs[base + name] for name in repo.refs.keys(base=base) if name != b"HEAD"}


def _changes(before: dict[bytes, bytes], after: dict[bytes, bytes]) -> list[RefUpdate]:
    return [
        RefUpdate(ref.decode(), before.get(ref, b"").decode(), after.get(ref, b"").decode())
        for ref in sorted(before.keys() | after.keys())
        if before.get(ref) != after.get(ref)
    ]


def fetch(path: str, home: str, remote: str | None, credentials: Credentials | None, depth: int,
          progress: ProgressLines) -> list[RefUpdate]:
    from dulwich import porcelain

    from .packs import receive_in_one_pass

    with open_repository(path) as repo:
        remote = remote or _default_remote(repo)
        _check_remote(repo, remote)
        before = _tracking(repo, remote)
        receive_in_one_pass(repo)
        porcelain.fetch(repo, remote, errstream=progress, depth=depth or None, env={},
                        **transport_kwargs(credentials))
        progress.flush()
        return _changes(before, _tracking(repo, remote))


def pull(path: str, home: str, remote: str | None, branch: str | None, credentials: Credentials | None,
         ff_only: bool, progress: ProgressLines) -> PullResult:
    from dulwich import porcelain
    from dulwich.porcelain import DivergedBranches, Error

    from .packs import receive_in_one_pass

    with open_repository(path) as repo:
        receive_in_one_pass(repo)
        current = current_branch(repo)
        if remote is None or branch is None:
            upstream = upstream_of(repo, current) if current else None
            if upstream is None:
                raise FailedPrecondition(
                    f"no upstream configured for branch '{current or 'HEAD'}': pass remote and branch"
                )
            up_remote, _, up_branch = upstream[0].partition("/")
            remote, branch = remote or up_remote, branch or up_branch
        _check_remote(repo, remote)
        old_head = repo.refs.follow(b"HEAD")[1]
        # The fetched branch is also recorded as its remote-tracking ref, as `git pull` does.
        refspec = HEADS + branch.encode() + b":refs/remotes/" + remote.encode() + b"/" + branch.encode()
        try:
            porcelain.pull(repo, remote, refspecs=[refspec], errstream=progress, fast_forward=False,
                           ff_only=ff_only, env={}, **transport_kwargs(credentials))
        except DivergedBranches:
            raise Aborted(f"cannot fast-forward '{current}' to {remote}/{branch}: the branches diverged") from None
        except Error as err:
            index = repo.open_index()
            if index.has_conflicts():
                paths = conflicted_paths(index)
                raise Aborted(
                    f"merge conflict pulling {remote}/{branch} in: {', '.join(paths)}; "
                    "resolve and commit, or reset --hard to abandon the merge"
                ) from None
            raise FailedPrecondition(f"pull failed: {err}") from None
        progress.flush()
        new_head = repo.refs.follow(b"HEAD")[1]
        parents = repo[new_head].parents if new_head else []
        merged = len(parents) > 1 and parents[0] == old_head  # a merge commit made by this pull
        return PullResult(new_head.decode() if new_head else "", fast_forward=new_head != old_head and not merged,
                          up_to_date=new_head == old_head)


def push(path: str, home: str, remote: str | None, branch: str | None, credentials: Credentials | None,
         force: bool, set_upstream: bool, progress: ProgressLines) -> list[RefUpdate]:
    from dulwich import porcelain
    from dulwich.porcelain import DivergedBranches

    with open_repository(path) as repo:
        remote = remote or _default_remote(repo)
        _check_remote(repo, remote)
        branch = branch or current_branch(repo)
        if not branch:
            raise FailedPrecondition("HEAD is detached: name the branch to push")
        local = HEADS + branch.encode()
        if local not in repo.refs:
            raise NotFound(f"branch '{branch}' does not exist")
        tracking = b"refs/remotes/" + remote.encode() + b"/" + branch.encode()
        old = repo.refs[tracking] if tracking in repo.refs else b""
        try:
            result = porcelain.push(repo, remote, [local + b":" + local], errstream=progress, force=force,
                                    set_upstream=set_upstream, env={}, **transport_kwargs(credentials))
        except DivergedBranches:
            raise Aborted(
                f"push of '{branch}' to '{remote}' rejected (non-fast-forward): the remote branch has commits "
                "this one lacks; pull first or force"
            ) from None
        progress.flush()
        rejected = {ref: error for ref, error in (result.ref_status or {}).items() if error is not None}
        if rejected:
            detail = ", ".join(f"{ref.decode()}: {error}" for ref, error in rejected.items())
            raise Aborted(f"push to '{remote}' rejected by the remote: {detail}")
        new = repo.refs[local]
        return [RefUpdate(local.decode(), old.decode(), new.decode())] if old != new else []
