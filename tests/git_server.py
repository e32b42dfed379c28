"""A real smart-HTTP git server on loopback for the git tests and benchmarks: `git http-backend` (CGI) behind a
small threaded HTTP server, with HTTP basic auth on every repository under /private/.

Real git protocol end to end (v0 and v2, fetch and push), not a mock. Repositories live in `root`; push is
enabled for all of them (http.receivepack) so tests can push without a REMOTE_USER dance.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USERNAME = "alice"
PASSWORD = "s3cret-token"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Server", "GIT_AUTHOR_EMAIL": "server@example.com",
    "GIT_COMMITTER_NAME": "Server", "GIT_COMMITTER_EMAIL": "server@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "LC_ALL": "C",
}


def git(*args: str, cwd: str | Path | None = None, env: dict | None = None) -> str:
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    # safe.directory: the tests (root) inspect repositories owned by `user`.
    return subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=full_env, check=True, capture_output=True, text=True).stdout


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._body() if self.command == "POST" else b""
        path, _, query = self.path.partition("?")
        self.server.requests.append((self.command, path, self.headers.get("Authorization") is not None))
        if path.startswith("/private/") and self.headers.get("Authorization") != self.server.auth_header:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": USERNAME,
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": "/nonexistent",
        }
        if proto := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = proto
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    auth_header: str
    requests: list


@dataclass
class GitServer:
    """Repositories served at {url}/<name>.git and, behind basic auth, {url}/private/<name>.git."""

    root: Path
    url: str
    server: _Server

    @property
    def requests(self) -> list:
        return self.server.requests

    def bare(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def create(self, name: str, files: dict[str, str] | None = None, branches: tuple[str, ...] = ()) -> Path:
        """A bare repository `name` (may be "private/x") with one commit on main holding `files`, plus branches
        each with one more commit adding `<branch>.txt`."""
        bare = self.bare(name)
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", str(bare))
        git("config", "http.receivepack", "true", cwd=bare)
        work = self.root / f".work-{name.replace('/', '-')}"
        git("clone", "-q", str(bare), str(work))
        git("checkout", "-q", "-b", "main", cwd=work)
        for rel, text in (files or {"README.md": "hello\n"}).items():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "initial", cwd=work)
        git("push", "-q", "origin", "main", cwd=work)
        for branch in branches:
            git("checkout", "-q", "-b", branch, "main", cwd=work)
            (work / f"{branch}.txt").write_text(f"{branch}\n")
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", f"on {branch}", cwd=work)
            git("push", "-q", "origin", branch, cwd=work)
        git("checkout", "-q", "main", cwd=work)
        return bare

    def commit_on_server(self, name: str, rel: str, text: str, message: str, branch: str = "main") -> str:
        """A new commit pushed straight into the served repository (as if someone else pushed); returns its sha."""
        work = self.root / f".work-{name.replace('/', '-')}"
        git("fetch", "-q", "origin", cwd=work)
        git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=work)
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", message, cwd=work)
        git("push", "-q", "origin", branch, cwd=work)
        return git("rev-parse", "HEAD", cwd=work).strip()

    def head(self, name: str, branch: str = "main") -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.bare(name)).strip()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


def start_git_server(root: Path) -> GitServer:
    root.mkdir(parents=True, exist_ok=True)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.root = root
    server.auth_header = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    server.requests = []
    threading.Thread(target=server.serve_forever, name="git-http", daemon=True).start()
    return GitServer(root=root, url=f"http://127.0.0.1:{server.server_address[1]}", server=server)
