"""Local branches: list, create, check out, delete."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from .repository import open_repository
from .revisions import resolve_commit, upstream_of

HEADS = b"refs/heads/"


@dataclass(frozen=True)
class Branch:
    name: str
    commit: str
    current: bool
    upstream: str | None


def current_branch(repo) -> str:
    chain, _sha = repo.refs.follow(b"HEAD")
    return chain[-1].decode().removeprefix("refs/heads/") if len(chain) > 1 else ""


def _check_name(name: str) -> bytes:
    from dulwich.refs import check_ref_format

    ref = HEADS + name.encode()
    if not name or not check_ref_format(ref):
        raise InvalidArgument(f"'{name}' is not a valid branch name")
    return ref


def list_branches(path: str, home: str) -> tuple[list[Branch], str]:
    with open_repository(path) as repo:
        current = current_branch(repo)
        branches = []
        for name in sorted(repo.refs.keys(base=HEADS)):
            text = name.decode()
            upstream = upstream_of(repo, text)
            branches.append(Branch(
                name=text,
                commit=repo.refs[HEADS + name].decode(),
                current=text == current,
                upstream=upstream[0] if upstream else None,
            ))
        return branches, current


def create_branch(path: str, home: str, name: str, start_point: str | None, checkout: bool) -> None:
    ref = _check_name(name)
    with open_repository(path) as repo:
        if ref in repo.refs:
            raise AlreadyExists(f"a branch named '{name}' already exists")
        if start_point is None and repo.refs.follow(b"HEAD")[1] is None:
            if checkout:  # `git checkout -b` before the first commit: just point HEAD at the unborn branch
                repo.refs.set_symbolic_ref(b"HEAD", ref)
                return
            raise FailedPrecondition(f"cannot create branch '{name}': HEAD has no commit yet")
        sha = resolve_commit(repo, start_point or "HEAD")
        repo.refs[ref] = sha
        if checkout:
            _checkout(repo, name)


def checkout_branch(path: str, home: str, name: str) -> None:
    with open_repository(path) as repo:
        if HEADS + name.encode() not in repo.refs:
            raise NotFound(f"branch '{name}' does not exist")
        _checkout(repo, name)


def _checkout(repo, name: str) -> None:
    from dulwich import porcelain
    from dulwich.porcelain import CheckoutError

    try:
        porcelain.checkout(repo, name)
    except CheckoutError as err:
        # Local changes the checkout would overwrite (git refuses the same way).
        raise FailedPrecondition(f"cannot check out '{name}': {err}") from None


def delete_branch(path: str, home: str, name: str, force: bool) -> None:
    ref = HEADS + name.encode()
    with open_repository(path) as repo:
        if ref not in repo.refs:
            raise NotFound(f"branch '{name}' not found")
        if current_branch(repo) == name:
            raise FailedPrecondition(f"cannot delete branch '{name}': it is checked out")
        if not force:
            head = repo.refs.follow(b"HEAD")[1]
            tip = repo.refs[ref]
            # Merged: no commit of the branch is missing from HEAD's history.
            if head is None or next(iter(repo.get_walker(include=[tip], exclude=[head])), None) is not None:
                raise FailedPrecondition(f"the branch '{name}' is not fully merged; delete it with force")
        del repo.refs[ref]
        config = repo.get_config()
        section = (b"branch", name.encode())
        if config.has_section(section):
            del config[section]
            config.write_to_path()
