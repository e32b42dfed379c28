"""Naming commits and tracking branches: revision strings to commits, a branch's upstream."""

from __future__ import annotations

from ...errors import NotFound


def resolve_commit(repo, revision: str) -> bytes:
    """A branch, tag, remote branch, full or abbreviated sha, or HEAD-relative expression, to a commit sha."""
    from dulwich.objects import Commit
    from dulwich.objectspec import parse_commit, parse_object

    try:
        commit = parse_commit(repo, revision.encode())
    except (KeyError, ValueError):
        try:  # HEAD~2, main^ ...: parse_commit knows names and ids, parse_object the suffixes
            commit = parse_commit(repo, parse_object(repo, revision.encode()).id)
        except (KeyError, ValueError):
            raise NotFound(f"unknown revision '{revision}'") from None
    if not isinstance(commit, Commit):
        raise NotFound(f"'{revision}' is not a commit")
    return commit.id


def upstream_of(repo, branch: str) -> tuple[str, bytes | None] | None:
    """(`remote/branch`, its remote-tracking sha or None) from branch.<name>.remote/merge, or None if unset."""
    config = repo.get_config()
    section = (b"branch", branch.encode())
    try:
        remote = config.get(section, b"remote")
        merge = config.get(section, b"merge")
    except KeyError:
        return None
    name = merge.removeprefix(b"refs/heads/")
    if remote == b".":  # tracking a local branch
        tracking, label = b"refs/heads/" + name, name.decode()
    else:
        tracking, label = b"refs/remotes/" + remote + b"/" + name, f"{remote.decode()}/{name.decode()}"
    return label, repo.refs[tracking] if tracking in repo.refs else None
