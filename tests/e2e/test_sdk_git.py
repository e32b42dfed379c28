"""`sandbox.git` of the unmodified Python SDK (e2b 2.63) through the daemon, against the loopback git server.

The SDK runs the git CLI through Process/Start (`/bin/bash -l -c 'git …'`, sdk-expectations.md §4) as the
default user `user`, so this needs git on PATH, HOME for the user and git's English messages — the image's part.
"""

from __future__ import annotations

import os
import pwd
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b import GitAuthException, Sandbox

from tests.git_server import PASSWORD, USERNAME, GitServer, git, start_git_server

pytestmark = pytest.mark.sdk


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[GitServer]:
    srv = start_git_server(tmp_path_factory.mktemp("git-server"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def sbx(debug_env) -> Sandbox:
    return Sandbox.create()


@pytest.fixture
def scratch(sandbox_user) -> Iterator[Path]:
    pw = pwd.getpwnam(sandbox_user)
    d = Path(pw.pw_dir) / f"envd-sdkgit-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    d.mkdir()
    os.chown(d, pw.pw_uid, pw.pw_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_clone_status_add_commit_branches_push_pull(sbx, server, scratch):
    name = f"private/sdk{uuid.uuid4().hex[:6]}"
    server.create(name)
    repo = str(scratch / "work")
    sbx.git.clone(f"{server.url}/{name}.git", path=repo, username=USERNAME, password=PASSWORD)
    assert PASSWORD not in (Path(repo) / ".git" / "config").read_text(), "the SDK strips credentials after clone"
    assert Path(repo, "README.md").read_text() == "hello\n"
    assert Path(repo).stat().st_uid == pwd.getpwnam("user").pw_uid

    sbx.commands.run(f"echo changed > {repo}/README.md && echo new > {repo}/new.txt")
    status = sbx.git.status(repo)
    assert status.current_branch == "main" and status.upstream == "origin/main"
    assert {f.name: f.status for f in status.file_status} == {"README.md": "modified", "new.txt": "untracked"}

    sbx.git.add(repo)
    assert all(f.staged for f in sbx.git.status(repo).file_status)
    sbx.git.commit(repo, "from the sdk", author_name="Sdk User", author_email="sdk@example.com")
    assert sbx.git.status(repo).ahead == 1

    sbx.git.create_branch(repo, "topic")
    branches = sbx.git.branches(repo)
    assert branches.current_branch == "topic" and set(branches.branches) == {"main", "topic"}
    sbx.git.checkout_branch(repo, "main")

    sbx.git.push(repo, username=USERNAME, password=PASSWORD)
    assert server.head(name) == git("rev-parse", "HEAD", cwd=repo).strip()
    assert PASSWORD not in (Path(repo) / ".git" / "config").read_text()

    theirs = server.commit_on_server(name, "theirs.txt", "theirs\n", "from elsewhere")
    sbx.git.pull(repo, username=USERNAME, password=PASSWORD)
    assert git("rev-parse", "HEAD", cwd=repo).strip() == theirs
    assert Path(repo, "theirs.txt").read_text() == "theirs\n"


def test_configure_user_writes_the_users_global_config_and_commit_uses_it(sbx, server, scratch):
    gitconfig = Path(pwd.getpwnam("user").pw_dir) / ".gitconfig"
    saved = gitconfig.read_bytes() if gitconfig.exists() else None
    try:
        sbx.git.configure_user("Global Sdk", "global@example.com")
        assert sbx.git.get_config("user.name") == "Global Sdk"
        assert gitconfig.stat().st_uid == pwd.getpwnam("user").pw_uid
        repo = str(scratch / "init")
        sbx.git.init(repo, initial_branch="main")
        sbx.commands.run(f"echo a > {repo}/a.txt")
        sbx.git.add(repo)
        sbx.git.commit(repo, "no author given")
        assert git("log", "-1", "--format=%an <%ae>", cwd=repo).strip() == "Global Sdk <global@example.com>"
    finally:
        if saved is None:
            gitconfig.unlink(missing_ok=True)
        else:
            gitconfig.write_bytes(saved)


def test_clone_without_credentials_is_a_git_auth_error(sbx, server, scratch):
    name = f"private/sdk{uuid.uuid4().hex[:6]}"
    server.create(name)
    with pytest.raises(GitAuthException):
        sbx.git.clone(f"{server.url}/{name}.git", path=str(scratch / "nope"))
    assert not (scratch / "nope").exists()
