"""git.Git: native clone and status against the git CLI doing the same, in the same run.

- Clone of a 2,000-commit repository from the loopback smart-HTTP server (`git http-backend`,
  tests/git_server.py) through the daemon's Clone RPC (grpcio; dulwich in the daemon, as user `user`) vs
  `git clone` of the same URL. Goal <= 2x. Also printed: the CPU each side spends (the daemon's; git clone's
  processes less the server's share), steadier than wall time on a loaded machine: most of the daemon's is
  dulwich's pure-Python work per object of the received pack (packs.py).
- Status of a clean 10,000-file working tree through the Status RPC vs `git status --porcelain` on the same
  tree. Goal <= 3x. (After one warm-up each: both then trust the index's stat data, and envd reuses the index
  it parsed — index_cache.py; the first, cold status is printed too.)
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import grpc

from envd.spec.git import git_pb2 as pb
from envd.spec.git import git_pb2_grpc
from tests.git_server import GIT_ENV, git, start_git_server

from .common import median, report, running_daemon, timed

COMMITS = 2000
FILES = 10_000


def fast_import_history(bare: Path, commits: int) -> None:
    """`commits` commits on main, each rewriting one of 50 files (git fast-import: seconds, not minutes)."""
    lines = []
    for i in range(commits):
        data = f"line {i}\n" * (1 + i % 7)
        lines += [
            "commit refs/heads/main",
            f"committer Bench <bench@example.com> {1700000000 + i} +0000",
            f"data {len(f'commit {i}')}", f"commit {i}",
            f"M 100644 inline file{i % 50}.txt", f"data {len(data.encode())}", data.rstrip("\n"),
        ]
    stream = ("\n".join(lines) + "\n").encode()
    subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=stream, check=True,
                   env={**os.environ, **GIT_ENV})


def make_tree(path: Path, files: int, uid: int, gid: int) -> None:
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(path))
    for i in range(files):
        d = path / f"d{i // 100:03d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.txt").write_text(f"file {i}\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "tree", cwd=path)
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(path)], check=True)


def cpu_now(daemon) -> tuple[float, float]:
    """CPU seconds used so far by the daemon, and by this process's finished children: `git clone` and the
    git server's CGI processes (started by the server thread here)."""
    import resource

    import psutil

    times = psutil.Process(daemon.process.pid).cpu_times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return times.user + times.system, children.ru_utime + children.ru_stime


def run() -> bool:
    ok = True
    with tempfile.TemporaryDirectory(prefix="envd-bench-git-") as tmp, running_daemon() as daemon:
        pw = pwd.getpwnam("user")
        server = start_git_server(Path(tmp) / "srv")
        work = Path(pw.pw_dir) / f"envd-bench-git-{uuid.uuid4().hex[:6]}"
        work.mkdir()
        os.chown(work, pw.pw_uid, pw.pw_gid)
        try:
            bare = server.bare("big")
            git("init", "-q", "--bare", "-b", "main", str(bare))
            fast_import_history(bare, COMMITS)
            url = f"{server.url}/big.git"
            with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
                stub = git_pb2_grpc.GitStub(channel)
                n = [0]

                def native_clone():
                    n[0] += 1
                    dest = work / f"native{n[0]}"
                    done = [e for e in stub.Clone(pb.CloneRequest(url=url, path=str(dest)), timeout=300)
                            if e.HasField("done")]
                    assert done and done[0].done.head
                    shutil.rmtree(dest)

                def cli_clone():
                    n[0] += 1
                    dest = work / f"cli{n[0]}"
                    subprocess.run(["git", "clone", "-q", url, str(dest)], check=True,
                                   env={**os.environ, **GIT_ENV})
                    shutil.rmtree(dest)

                native_clone()  # warm-up: first use imports dulwich in the daemon
                native, cli, cpu = [], [], {"native": [], "cli": [], "server": []}
                for _ in range(5):  # the machine may be shared: more rounds, interleaved
                    before = cpu_now(daemon)
                    native += timed(native_clone, 1)
                    middle = cpu_now(daemon)
                    cli += timed(cli_clone, 1)
                    after = cpu_now(daemon)
                    cpu["native"].append(middle[0] - before[0])
                    cpu["server"].append(middle[1] - before[1])
                    cpu["cli"].append(after[1] - middle[1] - cpu["server"][-1])
                ratio = median(native) / median(cli)
                ok &= report(f"clone {COMMITS} commits over HTTP vs git clone",
                             f"{median(native) * 1e3:.0f} ms vs {median(cli) * 1e3:.0f} ms = {ratio:.2f}x",
                             "<= 2x", ratio <= 2)
                native_cpu, cli_cpu = median(cpu["native"]), median(cpu["cli"])
                print(f"info  clone CPU (less sensitive to load): daemon {native_cpu * 1e3:.0f} ms vs git clone "
                      f"~{cli_cpu * 1e3:.0f} ms (its processes' CPU less the server's) = {native_cpu / cli_cpu:.2f}x")

                tree = work / "tree"
                make_tree(tree, FILES, pw.pw_uid, pw.pw_gid)
                status_req = pb.StatusRequest(path=str(tree))

                def native_status():
                    assert not stub.Status(status_req, timeout=120).files

                def cli_status():
                    out = subprocess.run(["git", "-c", "safe.directory=*", "status", "--porcelain"], cwd=tree,
                                         check=True, capture_output=True, env={**os.environ, **GIT_ENV}).stdout
                    assert out == b""

                cold_native, cold_cli = timed(native_status, 1)[0], timed(cli_status, 1)[0]
                print(f"info  first status (envd parses the index, then keeps it) {cold_native * 1e3:.0f} ms vs "
                      f"git {cold_cli * 1e3:.0f} ms = {cold_native / cold_cli:.2f}x")
                native, cli = [], []
                for _ in range(5):
                    native += timed(native_status, 1)
                    cli += timed(cli_status, 1)
                ratio = median(native) / median(cli)
                ok &= report(f"status, {FILES} files clean vs git status",
                             f"{median(native) * 1e3:.0f} ms vs {median(cli) * 1e3:.0f} ms = {ratio:.2f}x",
                             "<= 3x", ratio <= 3)
        finally:
            server.close()
            shutil.rmtree(work, ignore_errors=True)
    return ok


if __name__ == "__main__":
    run()
