"""git.Git (proto/git) over gRPC (grpcio) and Connect JSON, against a real smart-HTTP server (`git http-backend`
on loopback, tests/git_server.py) with basic-auth protected repositories. Default user `user`: every repository
the daemon writes must be owned by that user. What the server holds is checked with the git CLI.
"""

from __future__ import annotations

import os
import pwd
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from envd.spec.git import git_pb2 as pb
from envd.spec.git import git_pb2_grpc
from tests.git_server import PASSWORD, USERNAME, GitServer, git, start_git_server

CREDS = pb.Credentials(username=USERNAME, password=PASSWORD)
WHO = dict(author_name="Test User", author_email="test@example.com")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[GitServer]:
    srv = start_git_server(tmp_path_factory.mktemp("git-server"))
    srv.create("pub", files={"README.md": "hello\n", "src/app.py": "print(1)\n"}, branches=("dev",))
    srv.create("private/sec", files={"secret.txt": "classified\n"})
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def stub(daemon) -> Iterator[git_pb2_grpc.GitStub]:
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        yield git_pb2_grpc.GitStub(channel)


@pytest.fixture
def home(user_home) -> Path:
    return user_home


def fresh_repo(server: GitServer, private: bool = False) -> str:
    """A new served repository (tests that push get their own)."""
    name = f"{'private/' if private else ''}r{uuid.uuid4().hex[:8]}"
    server.create(name)
    return name


def clone(stub, url: str, path: Path, **kw) -> tuple[list[pb.Progress], pb.CloneResult]:
    progress, done = [], None
    for event in stub.Clone(pb.CloneRequest(url=url, path=str(path), **kw), timeout=60):
        if event.HasField("progress"):
            progress.append(event.progress)
        elif event.HasField("done"):
            done = event.done
    assert done is not None, "the stream ended without a result"
    return progress, done


def drain(stream):
    return [e.done for e in stream if e.HasField("done")][-1]


def put(path: Path, text: str) -> None:
    """A file written as the sandbox user would (the tests run as root)."""
    path.write_text(text)
    pw = pwd.getpwnam("user")
    os.chown(path, pw.pw_uid, pw.pw_gid)


def owned_by_user(root: Path) -> None:
    uid = pwd.getpwnam("user").pw_uid
    wrong = [str(p) for p in [root, *root.rglob("*")] if p.lstat().st_uid != uid]
    assert not wrong, f"not owned by user: {wrong[:5]}"


def expect_error(code: grpc.StatusCode, fn, *args, **kw) -> str:
    with pytest.raises(grpc.RpcError) as info:
        result = fn(*args, **kw)
        if hasattr(result, "__iter__"):
            list(result)
    assert info.value.code() == code, info.value.details()
    return info.value.details()


# --- clone ---------------------------------------------------------------------------------------------------


def test_clone_public_checks_out_files_owned_by_the_user_with_progress(stub, server, home):
    progress, done = clone(stub, f"{server.url}/pub.git", home / "pub")
    assert done.path == str(home / "pub") and done.branch == "main"
    assert done.head == server.head("pub")
    assert (home / "pub" / "src" / "app.py").read_text() == "print(1)\n"
    owned_by_user(home / "pub")
    assert progress, "clone streamed no progress"
    assert git("config", "remote.origin.url", cwd=home / "pub").strip() == f"{server.url}/pub.git"
    # The git CLI agrees the clone is complete and clean.
    assert git("status", "--porcelain", cwd=home / "pub") == ""
    assert git("fsck", "--no-progress", cwd=home / "pub") == ""


def test_clone_private_with_credentials_depth_one_and_branch_stores_no_secret(stub, server, home):
    _, done = clone(stub, f"{server.url}/private/sec.git", home / "sec", credentials=CREDS, depth=1)
    assert (home / "sec" / "secret.txt").read_text() == "classified\n"
    assert (home / "sec" / ".git" / "shallow").exists()
    leaked = [str(p) for p in (home / "sec" / ".git").rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert not leaked, f"password written to {leaked}"
    _, done = clone(stub, f"{server.url}/pub.git", home / "dev", branch="dev", depth=1)
    assert done.branch == "dev" and (home / "dev" / "dev.txt").exists()
    log = stub.Log(pb.LogRequest(path=str(home / "dev")))
    assert [c.message for c in log.commits] == ["on dev\n"], "depth 1 keeps only the tip"


def test_clone_with_credentials_in_the_url_keeps_them_out_of_the_config(stub, server, home):
    host = server.url.removeprefix("http://")
    clone(stub, f"http://{USERNAME}:{PASSWORD}@{host}/private/sec.git", home / "sec")
    config = (home / "sec" / ".git" / "config").read_text()
    assert PASSWORD not in config and f"url = {server.url}/private/sec.git" in config


# --- working tree --------------------------------------------------------------------------------------------


def test_status_add_commit_log(stub, server, home):
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    put(repo / "README.md", "changed\n")
    put(repo / "new.txt", "new\n")
    (repo / "src" / "app.py").unlink()
    st = stub.Status(pb.StatusRequest(path=str(repo)))
    assert (st.branch, st.detached, st.upstream, st.ahead, st.behind) == ("main", False, "origin/main", 0, 0)
    files = {f.path: (f.index, f.worktree) for f in st.files}
    assert files == {
        "README.md": (pb.FILE_CHANGE_UNMODIFIED, pb.FILE_CHANGE_MODIFIED),
        "new.txt": (pb.FILE_CHANGE_UNTRACKED, pb.FILE_CHANGE_UNTRACKED),
        "src/app.py": (pb.FILE_CHANGE_UNMODIFIED, pb.FILE_CHANGE_DELETED),
    }
    stub.Add(pb.AddRequest(path=str(repo), paths=["new.txt"]))
    files = {f.path: f.index for f in stub.Status(pb.StatusRequest(path=str(repo))).files}
    assert files["new.txt"] == pb.FILE_CHANGE_ADDED and files["README.md"] == pb.FILE_CHANGE_UNMODIFIED
    stub.Add(pb.AddRequest(path=str(repo)))  # everything, deletions included
    files = {f.path: (f.index, f.worktree) for f in stub.Status(pb.StatusRequest(path=str(repo))).files}
    assert files == {
        "README.md": (pb.FILE_CHANGE_MODIFIED, pb.FILE_CHANGE_UNMODIFIED),
        "new.txt": (pb.FILE_CHANGE_ADDED, pb.FILE_CHANGE_UNMODIFIED),
        "src/app.py": (pb.FILE_CHANGE_DELETED, pb.FILE_CHANGE_UNMODIFIED),
    }
    sha = stub.Commit(pb.CommitRequest(path=str(repo), message="second", **WHO)).sha
    st = stub.Status(pb.StatusRequest(path=str(repo)))
    assert (st.head, list(st.files), st.ahead) == (sha, [], 1)
    log = stub.Log(pb.LogRequest(path=str(repo)))
    assert [c.message for c in log.commits] == ["second", "initial\n"]
    assert (log.commits[0].author.name, log.commits[0].author.email) == ("Test User", "test@example.com")
    assert list(log.commits[0].parents) == [log.commits[1].sha]
    assert git("log", "-1", "--format=%H %an", cwd=repo).strip() == f"{sha} Test User"
    owned_by_user(repo)
    # Nothing left to commit.
    details = expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.Commit,
                           pb.CommitRequest(path=str(repo), message="again", **WHO))
    assert "nothing to commit" in details
    empty = stub.Commit(pb.CommitRequest(path=str(repo), message="empty", allow_empty=True, **WHO)).sha
    assert stub.Log(pb.LogRequest(path=str(repo), max_count=1)).commits[0].sha == empty


def test_init_then_commit_uses_the_identity_from_local_config(stub, home):
    repo = home / "fresh"
    stub.Init(pb.InitRequest(path=str(repo), initial_branch="trunk"))
    owned_by_user(repo)
    put(repo / "a.txt", "a\n")
    stub.Add(pb.AddRequest(path=str(repo)))
    details = expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.Commit,
                           pb.CommitRequest(path=str(repo), message="first")) if not _global_identity() else None
    if details is not None:
        assert "identity" in details
    for key, value in (("user.name", "Local Name"), ("user.email", "local@example.com")):
        stub.SetConfig(pb.SetConfigRequest(scope=pb.CONFIG_SCOPE_LOCAL, path=str(repo), key=key, value=value))
    assert stub.GetConfig(pb.GetConfigRequest(scope=pb.CONFIG_SCOPE_LOCAL, path=str(repo), key="user.name")).value \
        == "Local Name"
    assert not stub.GetConfig(pb.GetConfigRequest(scope=pb.CONFIG_SCOPE_LOCAL, path=str(repo),
                                                  key="user.nothing")).HasField("value")
    stub.Commit(pb.CommitRequest(path=str(repo), message="first"))
    assert git("log", "-1", "--format=%an <%ae> %s", cwd=repo).strip() == "Local Name <local@example.com> first"
    assert git("symbolic-ref", "HEAD", cwd=repo).strip() == "refs/heads/trunk"


def _global_identity() -> bool:
    return (Path(pwd.getpwnam("user").pw_dir) / ".gitconfig").exists()


def test_global_config_is_the_users_own_file(stub):
    gitconfig = Path(pwd.getpwnam("user").pw_dir) / ".gitconfig"
    saved = gitconfig.read_bytes() if gitconfig.exists() else None
    key = f"envdtest.k{uuid.uuid4().hex[:6]}"
    try:
        stub.SetConfig(pb.SetConfigRequest(key=key, value="v1"))
        assert stub.GetConfig(pb.GetConfigRequest(key=key)).value == "v1"
        assert gitconfig.stat().st_uid == pwd.getpwnam("user").pw_uid
        assert git("config", "--file", str(gitconfig), key).strip() == "v1"
    finally:
        if saved is None:
            gitconfig.unlink(missing_ok=True)
        else:
            gitconfig.write_bytes(saved)


def test_reset_and_restore(stub, server, home):
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    first = stub.Commit(pb.CommitRequest(path=str(repo), message="empty", allow_empty=True, **WHO)).sha
    put(repo / "README.md", "edited\n")
    stub.Add(pb.AddRequest(path=str(repo), paths=["README.md"]))
    # restore --staged: unstaged again, the edit stays in the tree
    stub.Restore(pb.RestoreRequest(path=str(repo), paths=["README.md"], staged=True))
    files = {f.path: (f.index, f.worktree) for f in stub.Status(pb.StatusRequest(path=str(repo))).files}
    assert files == {"README.md": (pb.FILE_CHANGE_UNMODIFIED, pb.FILE_CHANGE_MODIFIED)}
    # restore (worktree): the edit is gone
    stub.Restore(pb.RestoreRequest(path=str(repo), paths=["README.md"]))
    assert (repo / "README.md").read_text() == "hello\n"
    # soft reset to the parent keeps the tree, mixed/hard as git does
    origin = server.head("pub")
    assert stub.Reset(pb.ResetRequest(path=str(repo), mode=pb.RESET_MODE_SOFT, target="HEAD~1")).head == origin
    stub.Reset(pb.ResetRequest(path=str(repo), mode=pb.RESET_MODE_HARD, target=first))
    put(repo / "README.md", "dirty\n")
    stub.Add(pb.AddRequest(path=str(repo)))
    stub.Reset(pb.ResetRequest(path=str(repo)))  # mixed HEAD: unstage
    files = {f.path: (f.index, f.worktree) for f in stub.Status(pb.StatusRequest(path=str(repo))).files}
    assert files == {"README.md": (pb.FILE_CHANGE_UNMODIFIED, pb.FILE_CHANGE_MODIFIED)}
    stub.Reset(pb.ResetRequest(path=str(repo), mode=pb.RESET_MODE_HARD))
    assert (repo / "README.md").read_text() == "hello\n" and git("status", "--porcelain", cwd=repo) == ""
    expect_error(grpc.StatusCode.NOT_FOUND, stub.Reset, pb.ResetRequest(path=str(repo), target="no-such-ref"))


# --- branches and remotes ------------------------------------------------------------------------------------


def test_branches_create_checkout_list_delete(stub, server, home):
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    stub.CreateBranch(pb.CreateBranchRequest(path=str(repo), name="feature", checkout=True))
    listing = stub.ListBranches(pb.ListBranchesRequest(path=str(repo)))
    assert listing.current == "feature"
    assert {b.name: b.current for b in listing.branches} == {"feature": True, "main": False}
    put(repo / "f.txt", "f\n")
    stub.Add(pb.AddRequest(path=str(repo)))
    stub.Commit(pb.CommitRequest(path=str(repo), message="feature work", **WHO))
    stub.CheckoutBranch(pb.CheckoutBranchRequest(path=str(repo), name="main"))
    assert not (repo / "f.txt").exists() and git("branch", "--show-current", cwd=repo).strip() == "main"
    details = expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.DeleteBranch,
                           pb.DeleteBranchRequest(path=str(repo), name="feature"))
    assert "not fully merged" in details
    stub.DeleteBranch(pb.DeleteBranchRequest(path=str(repo), name="feature", force=True))
    assert [b.name for b in stub.ListBranches(pb.ListBranchesRequest(path=str(repo))).branches] == ["main"]
    expect_error(grpc.StatusCode.ALREADY_EXISTS, stub.CreateBranch, pb.CreateBranchRequest(path=str(repo), name="main"))
    expect_error(grpc.StatusCode.INVALID_ARGUMENT, stub.CreateBranch, pb.CreateBranchRequest(path=str(repo), name="a..b"))
    expect_error(grpc.StatusCode.NOT_FOUND, stub.CheckoutBranch, pb.CheckoutBranchRequest(path=str(repo), name="nope"))
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.DeleteBranch,
                 pb.DeleteBranchRequest(path=str(repo), name="main"))


def test_remotes_list_add_remove(stub, server, home):
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    stub.AddRemote(pb.AddRemoteRequest(path=str(repo), name="mirror", url=f"{server.url}/private/sec.git"))
    remotes = {r.name: r.url for r in stub.ListRemotes(pb.ListRemotesRequest(path=str(repo))).remotes}
    assert remotes == {"origin": f"{server.url}/pub.git", "mirror": f"{server.url}/private/sec.git"}
    expect_error(grpc.StatusCode.ALREADY_EXISTS, stub.AddRemote,
                 pb.AddRemoteRequest(path=str(repo), name="mirror", url="http://x/y.git"))
    stub.AddRemote(pb.AddRemoteRequest(path=str(repo), name="mirror", url="http://x/y.git", overwrite=True))
    details = expect_error(grpc.StatusCode.INVALID_ARGUMENT, stub.AddRemote, pb.AddRemoteRequest(
        path=str(repo), name="leak", url=f"http://{USERNAME}:{PASSWORD}@example.com/r.git"))
    assert "credentials" in details and PASSWORD not in (repo / ".git" / "config").read_text()
    stub.RemoveRemote(pb.RemoveRemoteRequest(path=str(repo), name="mirror"))
    assert [r.name for r in stub.ListRemotes(pb.ListRemotesRequest(path=str(repo))).remotes] == ["origin"]
    expect_error(grpc.StatusCode.NOT_FOUND, stub.RemoveRemote, pb.RemoveRemoteRequest(path=str(repo), name="mirror"))


# --- network: push, fetch, pull ------------------------------------------------------------------------------


def test_push_fetch_and_pull_a_commit_made_on_the_server(stub, server, home):
    name = fresh_repo(server, private=True)
    repo = home / "work"
    clone(stub, f"{server.url}/{name}.git", repo, credentials=CREDS)
    put(repo / "mine.txt", "mine\n")
    stub.Add(pb.AddRequest(path=str(repo)))
    sha = stub.Commit(pb.CommitRequest(path=str(repo), message="from envd", **WHO)).sha
    expect_error(grpc.StatusCode.UNAUTHENTICATED, stub.Push, pb.PushRequest(path=str(repo)))
    pushed = drain(stub.Push(pb.PushRequest(path=str(repo), credentials=CREDS), timeout=60))
    assert [(u.ref, u.new_sha) for u in pushed.updated] == [("refs/heads/main", sha)]
    assert server.head(name) == sha
    # A push with a new branch and set_upstream records tracking.
    stub.CreateBranch(pb.CreateBranchRequest(path=str(repo), name="topic", checkout=True))
    drain(stub.Push(pb.PushRequest(path=str(repo), credentials=CREDS, set_upstream=True), timeout=60))
    assert server.head(name, "topic") == sha
    assert stub.Status(pb.StatusRequest(path=str(repo))).upstream == "origin/topic"
    stub.CheckoutBranch(pb.CheckoutBranchRequest(path=str(repo), name="main"))

    theirs = server.commit_on_server(name, "theirs.txt", "theirs\n", "from elsewhere")
    fetched = drain(stub.Fetch(pb.FetchRequest(path=str(repo), credentials=CREDS), timeout=60))
    assert ("refs/remotes/origin/main", theirs) in [(u.ref, u.new_sha) for u in fetched.updated]
    st = stub.Status(pb.StatusRequest(path=str(repo)))
    assert (st.ahead, st.behind) == (0, 1)
    pulled = drain(stub.Pull(pb.PullRequest(path=str(repo), credentials=CREDS), timeout=60))
    assert (pulled.head, pulled.fast_forward, pulled.up_to_date) == (theirs, True, False)
    assert (repo / "theirs.txt").read_text() == "theirs\n"
    owned_by_user(repo)
    again = drain(stub.Pull(pb.PullRequest(path=str(repo), credentials=CREDS), timeout=60))
    assert again.up_to_date


def test_pull_merges_diverged_branches(stub, server, home):
    name = fresh_repo(server)
    repo = home / "work"
    clone(stub, f"{server.url}/{name}.git", repo)
    stub.SetConfig(pb.SetConfigRequest(scope=pb.CONFIG_SCOPE_LOCAL, path=str(repo), key="user.name", value="M"))
    stub.SetConfig(pb.SetConfigRequest(scope=pb.CONFIG_SCOPE_LOCAL, path=str(repo), key="user.email", value="m@x"))
    put(repo / "local.txt", "local\n")
    stub.Add(pb.AddRequest(path=str(repo)))
    local = stub.Commit(pb.CommitRequest(path=str(repo), message="local")).sha
    theirs = server.commit_on_server(name, "remote.txt", "remote\n", "remote")
    details = expect_error(grpc.StatusCode.ABORTED, stub.Pull, pb.PullRequest(path=str(repo), ff_only=True))
    assert "diverged" in details
    pulled = drain(stub.Pull(pb.PullRequest(path=str(repo)), timeout=60))
    assert not pulled.fast_forward
    parents = git("log", "-1", "--format=%P", cwd=repo).split()
    assert parents == [local, theirs] and (repo / "remote.txt").exists() and (repo / "local.txt").exists()


# --- bad input -----------------------------------------------------------------------------------------------


def test_wrong_credentials_are_unauthenticated_and_leave_nothing(stub, server, home):
    for creds in (pb.Credentials(username=USERNAME, password="not-the-password"), None):
        details = expect_error(grpc.StatusCode.UNAUTHENTICATED, stub.Clone, pb.CloneRequest(
            url=f"{server.url}/private/sec.git", path=str(home / "sec"), credentials=creds))
        assert "authentication failed" in details and "not-the-password" not in details
        assert not (home / "sec").exists()


def test_nonexistent_repository_and_unreachable_host(stub, server, home):
    details = expect_error(grpc.StatusCode.NOT_FOUND, stub.Clone,
                           pb.CloneRequest(url=f"{server.url}/missing.git", path=str(home / "m")))
    assert "not found" in details and "missing.git" in details
    assert not (home / "m").exists()
    (home / "empty").mkdir()
    os.chown(home / "empty", pwd.getpwnam("user").pw_uid, pwd.getpwnam("user").pw_gid)
    details = expect_error(grpc.StatusCode.UNAVAILABLE, stub.Clone,
                           pb.CloneRequest(url="http://127.0.0.1:9/r.git", path=str(home / "empty")))
    assert "cannot reach" in details
    assert list((home / "empty").iterdir()) == [], "a failed clone into an empty directory left files"


def test_clone_into_a_non_empty_directory_or_where_the_user_may_not_write(stub, server, home):
    (home / "busy").mkdir()
    (home / "busy" / "keep.txt").write_text("keep\n")
    expect_error(grpc.StatusCode.ALREADY_EXISTS, stub.Clone,
                 pb.CloneRequest(url=f"{server.url}/pub.git", path=str(home / "busy")))
    assert [p.name for p in (home / "busy").iterdir()] == ["keep.txt"]
    # envd is root, the request is user's: /root is off limits for them.
    target = f"/root/envd-git-{uuid.uuid4().hex[:6]}"
    details = expect_error(grpc.StatusCode.PERMISSION_DENIED, stub.Clone,
                           pb.CloneRequest(url=f"{server.url}/pub.git", path=target))
    assert "permission denied" in details and not os.path.exists(target)


def test_path_that_is_not_a_repository(stub, home):
    details = expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.Status, pb.StatusRequest(path=str(home)))
    assert "not a git repository" in details and str(home) in details
    expect_error(grpc.StatusCode.NOT_FOUND, stub.Log, pb.LogRequest(path=str(home / "nowhere")))


def test_push_rejected_non_fast_forward(stub, server, home):
    name = fresh_repo(server)
    repo = home / "work"
    clone(stub, f"{server.url}/{name}.git", repo)
    theirs = server.commit_on_server(name, "x.txt", "x\n", "someone else")
    stub.Commit(pb.CommitRequest(path=str(repo), message="mine", allow_empty=True, **WHO))
    details = expect_error(grpc.StatusCode.ABORTED, stub.Push, pb.PushRequest(path=str(repo)))
    assert "non-fast-forward" in details
    assert server.head(name) == theirs, "the rejected push changed the remote"


def test_merge_conflict_on_pull_names_the_paths(stub, server, home):
    name = fresh_repo(server)
    repo = home / "work"
    clone(stub, f"{server.url}/{name}.git", repo)
    server.commit_on_server(name, "README.md", "theirs\n", "their edit")
    put(repo / "README.md", "ours\n")
    stub.Add(pb.AddRequest(path=str(repo)))
    stub.Commit(pb.CommitRequest(path=str(repo), message="our edit", **WHO))
    details = expect_error(grpc.StatusCode.ABORTED, stub.Pull, pb.PullRequest(path=str(repo)))
    assert "conflict" in details and "README.md" in details
    st = stub.Status(pb.StatusRequest(path=str(repo)))
    assert {f.path: f.index for f in st.files}.get("README.md") == pb.FILE_CHANGE_CONFLICTED
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.Commit,
                 pb.CommitRequest(path=str(repo), message="x", **WHO))


def test_unknown_user_is_rejected(daemon):
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        stub = git_pb2_grpc.GitStub(channel)
        import base64

        auth = ("authorization", "Basic " + base64.b64encode(b"nobody-here:").decode())
        expect_error(grpc.StatusCode.UNAUTHENTICATED, stub.Status, pb.StatusRequest(path="/tmp"), metadata=[auth])


# --- Connect JSON --------------------------------------------------------------------------------------------


def test_connect_json_status_and_error(daemon, server, stub, home):
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    put(repo / "new.txt", "n\n")
    headers = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
    r = httpx.post(f"{daemon.url}/git.Git/Status", json={"path": str(repo)}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["branch"] == "main" and body["upstream"] == "origin/main"
    assert body["files"] == [{"path": "new.txt", "index": "FILE_CHANGE_UNTRACKED", "worktree": "FILE_CHANGE_UNTRACKED"}]
    r = httpx.post(f"{daemon.url}/git.Git/Status", json={"path": str(home)}, headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "failed_precondition"


def test_status_lists_untracked_directories_once_and_skips_ignored(stub, server, home):
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    for rel in ("newdir/a.txt", "newdir/deep/b.txt", "src/extra.py", "build/out.o", "only-ignored/x.o"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        put(repo / rel, "x\n")
    put(repo / ".gitignore", "*.o\nbuild/\n")
    files = [f.path for f in stub.Status(pb.StatusRequest(path=str(repo))).files]
    assert files == [".gitignore", "newdir/", "src/extra.py"]
    assert git("status", "--porcelain", cwd=repo).split() == ["??", ".gitignore", "??", "newdir/", "??", "src/extra.py"]


def test_repeated_status_sees_later_edits_and_index_changes(stub, server, home):
    # Status keeps the parsed index between calls (index_cache.py): it must still see every change.
    repo = home / "pub"
    clone(stub, f"{server.url}/pub.git", repo)
    status = lambda: {f.path: (f.index, f.worktree) for f in stub.Status(pb.StatusRequest(path=str(repo))).files}
    assert status() == {} and status() == {}
    put(repo / "README.md", "HELLO\n")  # same size, new content
    assert status() == {"README.md": (pb.FILE_CHANGE_UNMODIFIED, pb.FILE_CHANGE_MODIFIED)}
    put(repo / "README.md", "hello\n")  # original content again, new mtime: clean
    assert status() == {} and status() == {}
    put(repo / "README.md", "changed!\n")
    stub.Add(pb.AddRequest(path=str(repo), paths=["README.md"]))
    assert status() == {"README.md": (pb.FILE_CHANGE_MODIFIED, pb.FILE_CHANGE_UNMODIFIED)}
    stub.Commit(pb.CommitRequest(path=str(repo), message="edit", **WHO))
    assert status() == {}
    (repo / "src" / "app.py").unlink()
    assert status() == {"src/app.py": (pb.FILE_CHANGE_UNMODIFIED, pb.FILE_CHANGE_DELETED)}
    assert git("status", "--porcelain", cwd=repo).split() == ["D", "src/app.py"]


@pytest.mark.slow
def test_a_clone_abandoned_by_its_client_is_removed(stub, server, home):
    from tests.bench.bench_git import fast_import_history

    bare = server.bare("large")
    if not bare.exists():
        git("init", "-q", "--bare", "-b", "main", str(bare))
        fast_import_history(bare, 5000)
    dest = home / "large"
    call = stub.Clone(pb.CloneRequest(url=f"{server.url}/large.git", path=str(dest)), timeout=120)
    first = next(call)
    assert first.HasField("progress")
    call.cancel()
    deadline = time.monotonic() + 60
    while dest.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not dest.exists(), "the abandoned clone left its directory behind"
    # The service keeps serving.
    expect_error(grpc.StatusCode.FAILED_PRECONDITION, stub.Status, pb.StatusRequest(path=str(home)))
