"""run_code: the SDK round trip through envd's code port against the kernel itself and against jupyter_server,
and the time to a first result in a fresh context per language.

References run in the same process and the same run, interleaved with the envd figures; every kernel is started
from the same kernelspec dir (/opt/envd-kernels), with the environment and IPython profile envd gives its
kernels (envd.services.code.kernel_env), in /home/user:
- the floor: `x = 1` sent with jupyter-client (ZMQ) straight to an idle kernel, done when the kernel has both
  replied and gone idle (what envd waits for, code-interpreter.md §4.8);
- jupyter_server, the usual way to reach kernels over HTTP, started on loopback: the kernel created over REST,
  `execute_request` sent on one open channels websocket (websocket-client), done at execute_reply + idle;
- for the record, the same /execute sent raw over a keep-alive connection (no SDK): the daemon's share.
The SDK is e2b-code-interpreter in debug mode, pointed at the code port by E2B_SANDBOX_URL.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import websocket
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from envd.services.code.kernel_env import kernel_dirs, kernel_environment, write_ipython_dir
from envd.services.code.languages import kernel_spec_name
from tests.conftest import free_port

from .common import median, report, running_daemon, timed

PREFIX = "/opt/envd-kernels"
CWD = "/home/user"
CODE = "x = 1"
# §4.2's languages with a first cell that prints or returns 2; a language is measured once its kernelspec exists.
FIRST_CELL = {
    "python": "1 + 1",
    "javascript": "1 + 1",
    "typescript": "const two: number = 1 + 1; two",
    "r": "1 + 1",
    "bash": "echo $((1 + 1))",
    "java": "1 + 1",
}


def kernel_env(tmp: Path) -> dict[str, str]:
    return kernel_environment(PREFIX, write_ipython_dir(tmp / "ipython"))


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never became healthy")


# -- the floor: jupyter-client straight to the kernel ------------------------------------------------------


@contextmanager
def direct_kernel(spec: str, env: dict[str, str], log: Path) -> Iterator[Callable[[str], None]]:
    """A kernel started and driven by jupyter-client; yields run(code), which returns at reply + idle."""
    ksm = KernelSpecManager(kernel_dirs=kernel_dirs(PREFIX), ensure_native_kernel=False)
    km = KernelManager(kernel_name=spec, kernel_spec_manager=ksm)
    with open(log, "ab") as out:
        km.start_kernel(cwd=CWD, env=dict(env), stdout=out, stderr=out)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)

        def run(code: str) -> None:
            msg_id = kc.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
            while True:
                reply = kc.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") == msg_id:
                    assert reply["content"]["status"] == "ok", reply["content"]
                    break
            while True:
                msg = kc.get_iopub_msg(timeout=60)
                if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"):
                    break

        yield run
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# -- jupyter_server over REST + websocket ------------------------------------------------------------------


@contextmanager
def jupyter_server(tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """jupyter_server on loopback serving the kernelspecs of PREFIX; yields (base url, token)."""
    port, token = free_port(), uuid.uuid4().hex
    home = tmp / "jupyter"
    server_env = {
        **env,
        "JUPYTER_PATH": str(Path(PREFIX) / "share" / "jupyter"),  # the same kernelspec dir as envd's
        "JUPYTER_CONFIG_DIR": str(home / "config"),  # no user or system config
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    with open(tmp / "jupyter_server.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={CWD}",
             f"--IdentityProvider.token={token}", "--KernelSpecManager.ensure_native_kernel=False"],
            env=server_env, stdout=log, stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(f"{url}/api/status?token={token}", timeout=60)
        yield url, token
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def server_kernel(url: str, token: str, spec: str) -> Iterator[Callable[[str], None]]:
    """A kernel created over REST and one channels websocket to it; yields run(code, quickack) -> at reply + idle.

    jupyter_server leaves Nagle on for its websockets (tornado's default), so when it writes the reply's
    several small frames one after another, the later ones wait for the client's delayed ACK (~40 ms on
    Linux). `quickack` has the client ACK at once (TCP_QUICKACK before every read): jupyter_server's best case.
    """
    auth = {"Authorization": f"token {token}"}
    kernel = httpx.post(f"{url}/api/kernels", json={"name": spec, "path": ""}, headers=auth, timeout=120)
    kernel.raise_for_status()
    kernel_id = kernel.json()["id"]
    session = uuid.uuid4().hex
    ws = websocket.create_connection(
        f"ws://{url.removeprefix('http://')}/api/kernels/{kernel_id}/channels?session_id={session}",
        header=[f"Authorization: token {token}"], timeout=60,
    )

    def run(code: str, quickack: bool = False) -> None:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "bench", "session": session, "msg_type": "execute_request",
                       "version": "5.3", "date": datetime.datetime.now(datetime.UTC).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))
        replied = idle = False
        while not (replied and idle):
            if quickack:
                ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            msg = json.loads(ws.recv())
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                replied = True
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True

    try:
        run("pass")  # the kernel is up and the socket works before anything is timed
        yield run
    finally:
        ws.close()
        httpx.delete(f"{url}/api/kernels/{kernel_id}", headers=auth, timeout=60)


# -- envd -------------------------------------------------------------------------------------------------


class RawExecute:
    """POST /execute over one keep-alive HTTP/1.1 connection, the stream read to its end."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def run(self, code: str) -> None:
        self.conn.request("POST", "/execute", body=json.dumps({"code": code}),
                          headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200 and body.endswith(b'{"type": "end_of_execution"}\n'), body[-200:]
        assert b'"type": "error"' not in body, body

    def close(self) -> None:
        self.conn.close()


def sdk_sandbox(code_url: str):
    os.environ.update(E2B_DEBUG="true", E2B_SANDBOX_URL=code_url)
    from e2b_code_interpreter import Sandbox

    return Sandbox.create()


def bench_round_trip(sbx, code_port: int, tmp: Path, env: dict[str, str]) -> bool:
    raw = RawExecute(code_port)

    def run_sdk() -> None:
        execution = sbx.run_code(CODE)
        assert execution.error is None and execution.execution_count, execution

    with direct_kernel("python3", env, tmp / "kernels.log") as run_direct, \
            jupyter_server(tmp, env) as (url, token), server_kernel(url, token, "python3") as run_server:
        runners = {
            "sdk": run_sdk,
            "raw": lambda: raw.run(CODE),
            "direct": lambda: run_direct(CODE),
            "server": lambda: run_server(CODE),
            "server_quickack": lambda: run_server(CODE, quickack=True),
        }
        for fn in runners.values():  # warm up: imports, connections, the kernels' first cells
            timed(fn, 10)
        samples: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(10):
            for name, fn in runners.items():
                samples[name] += timed(fn, 20)
    raw.close()
    ms = {name: median(s) * 1e3 for name, s in samples.items()}
    floor_ratio = ms["sdk"] / ms["direct"]
    ok = report(
        f'SDK run_code("{CODE}") vs jupyter-client',
        f"{ms['sdk']:.2f} ms vs kernel over ZMQ {ms['direct']:.2f} ms = {floor_ratio:.2f}x",
        "<= 1.3x",
        floor_ratio <= 1.3,
    )
    print(f"{'':6}{'  same /execute sent raw (no SDK)':<44} {ms['raw']:.2f} ms = {ms['raw'] / ms['direct']:.2f}x")
    server_ratio = ms["sdk"] / ms["server"]
    ok &= report(
        f'SDK run_code("{CODE}") vs jupyter_server',
        f"{ms['sdk']:.2f} ms vs REST+websocket {ms['server']:.2f} ms = {server_ratio:.2f}x",
        "<= 0.5x",
        server_ratio <= 0.5,
    )
    print(f"{'':6}{'  jupyter_server, client ACKing at once':<44} {ms['server_quickack']:.2f} ms: envd = "
          f"{ms['sdk'] / ms['server_quickack']:.2f}x (no Nagle stall; the kernel alone: "
          f"{ms['server_quickack'] / ms['direct']:.2f}x)")
    return ok


def first_result(sbx, language: str, spec: str, tmp: Path, env: dict[str, str], rounds: int) -> str:
    code = FIRST_CELL[language]
    envd_s, create_s, direct_s = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        context = sbx.create_code_context(language=language)
        created = time.perf_counter()
        execution = sbx.run_code(code, context=context, timeout=120)
        envd_s.append(time.perf_counter() - start)
        create_s.append(created - start)
        sbx.remove_code_context(context)
        # R shows values as display data, not a main result (code-interpreter.md §2, kernels.md).
        output = "".join(r.text or "" for r in execution.results) + "".join(execution.logs.stdout)
        assert execution.error is None and "2" in output, execution

        start = time.perf_counter()
        with direct_kernel(spec, env, tmp / "kernels.log") as run_direct:
            run_direct(code)
            direct_s.append(time.perf_counter() - start)
    return (f"{median(envd_s):.2f} s (context {median(create_s):.2f} s + first run "
            f"{median(envd_s) - median(create_s):.2f} s); jupyter-client start + run {median(direct_s):.2f} s = "
            f"{median(envd_s) / median(direct_s):.2f}x")


def bench_first_result(sbx, tmp: Path, env: dict[str, str], rounds: int = 3) -> bool:
    """Seconds from create_code_context to the first cell's output, per installed language (a report)."""
    specs = Path(kernel_dirs(PREFIX)[0])
    ok = True
    for language in FIRST_CELL:
        spec = kernel_spec_name(language)
        name = f"first result, {language}"
        if not (specs / spec / "kernel.json").exists():
            print(f"{'':6}{name:<44} not measured: no `{spec}` kernelspec in {specs}")
            continue
        try:
            print(f"{'':6}{name:<44} {first_result(sbx, language, spec, tmp, env, rounds)}")
        except Exception as err:  # one broken kernel must not hide the other languages' figures
            ok = report(name, f"failed: {type(err).__name__}: {err}"[:200], "a result", False) and ok
    return ok


def run() -> bool:
    if not (Path(kernel_dirs(PREFIX)[0]) / "python3" / "kernel.json").exists():
        print(f"MISS  bench_code: no python kernel in {PREFIX} (run `make kernels`)")
        return False
    code_port = free_port()
    with running_daemon("-code-port", str(code_port)), \
            tempfile.TemporaryDirectory(prefix="envd-bench-code-") as tmp:
        wait_healthy(f"http://127.0.0.1:{code_port}/health")
        env = kernel_env(Path(tmp))
        sbx = sdk_sandbox(f"http://127.0.0.1:{code_port}")
        ok = bench_round_trip(sbx, code_port, Path(tmp), env)
        ok &= bench_first_result(sbx, Path(tmp), env)
    return ok
