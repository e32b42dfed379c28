"""The native code service (code.Interpreter, proto/code/code.proto) through grpcio, plus one Connect JSON and
one gRPC-Web call, against a real daemon and real ipykernel kernels.

The module's daemon runs with -code-port 0: the native service works without the HTTP API, starting kernels
when asked. `test_one_core_behind_both_apis` turns the code port on.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from envd.spec.code import code_pb2 as pb
from envd.spec.code import code_pb2_grpc as pb_grpc
from tests.conftest import Daemon, start_code_daemon, start_daemon, stop_daemon

pytestmark = pytest.mark.slow

# ENVD_TEST_KERNELS: another kernels venv (make kernels KERNELS=...), e.g. while the shared one is being rebuilt.
KERNELS = os.environ.get("ENVD_TEST_KERNELS", "/opt/envd-kernels")
TIMEOUT = 90  # per call: kernels start slowly on a loaded machine


def basic(user: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:".encode()).decode())


@pytest.fixture(scope="module")
def kernels(sandbox_user: str) -> str:
    if not Path(KERNELS, "share/jupyter/kernels/python3/kernel.json").exists():
        pytest.fail(f"the python kernel is not installed in {KERNELS}: run `make kernels`")
    runnable = subprocess.run(["runuser", "-u", sandbox_user, "--", f"{KERNELS}/bin/python", "-c", "pass"],
                              capture_output=True, text=True, check=False)
    if runnable.returncode != 0:
        pytest.fail(f"{KERNELS}/bin/python cannot run as {sandbox_user} ({runnable.stderr.strip()}): run `make kernels`")
    return KERNELS


@pytest.fixture(scope="module")
def code_daemon(tmp_path_factory: pytest.TempPathFactory, sandbox_user: str, kernels: str) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("code-rpc"), "-default-user", sandbox_user, "-kernels-prefix", kernels)
    yield d
    stop_daemon(d)
    assert d.process.returncode == 0


@pytest.fixture(scope="module")
def stub(code_daemon: Daemon) -> Iterator[pb_grpc.InterpreterStub]:
    with grpc.insecure_channel(f"127.0.0.1:{code_daemon.port}") as channel:
        yield pb_grpc.InterpreterStub(channel)


def run(stub, code: str, **fields) -> list[pb.ExecuteResponse]:
    metadata = fields.pop("metadata", None)
    return list(stub.Execute(pb.ExecuteRequest(code=code, **fields), timeout=TIMEOUT, metadata=metadata))


def kinds(events: list[pb.ExecuteResponse]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def stdout(events: list[pb.ExecuteResponse]) -> str:
    return "".join(e.stdout.text for e in events if e.WhichOneof("event") == "stdout")


def main_text(events: list[pb.ExecuteResponse]) -> str | None:
    texts = [e.result.text for e in events if e.WhichOneof("event") == "result" and e.result.is_main_result]
    return texts[0] if texts else None


def create(stub, metadata=None, **fields) -> pb.Context:
    return stub.CreateContext(pb.CreateContextRequest(**fields), timeout=TIMEOUT, metadata=metadata).context


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        result = call(*args, timeout=TIMEOUT, **kwargs)
        if not hasattr(result, "SerializeToString"):  # a stream: errors come with the first read
            list(result)
    return err.value


def test_execute_streams_events_in_order(stub) -> None:
    context = create(stub)
    events = run(stub, "import sys, time\n"
                       "for i in range(3):\n"
                       "    print(f'out {i}', flush=True); print(f'err {i}', file=sys.stderr, flush=True)\n"
                       "    time.sleep(0.05)\n"
                       "40 + 2", context_id=context.id)
    assert kinds(events)[0] == "execution_count" and events[0].execution_count.execution_count == 1
    assert kinds(events)[-1] == "end" and kinds(events).count("end") == 1
    streams = [(e.WhichOneof("event"), getattr(e, e.WhichOneof("event")).text)
               for e in events if e.WhichOneof("event") in ("stdout", "stderr")]
    assert "".join(f"{k}:{t}" for k, t in streams) == "".join(f"stdout:out {i}\nstderr:err {i}\n" for i in range(3))
    assert all(e.stdout.timestamp.seconds > time.time() - 600 for e in events if e.WhichOneof("event") == "stdout")
    assert main_text(events) == "42"

    events = run(stub, "from IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))\n{'a': [1, 'x']}",
                 context_id=context.id)
    results = [e.result for e in events if e.WhichOneof("event") == "result"]
    assert [r.is_main_result for r in results] == [False, True]
    assert results[0].html == "<b>hi</b>" and results[0].HasField("text") and not results[0].HasField("png")
    assert json.loads(json.dumps(_value(results[1].json))) == {"a": [1, "x"]}

    events = run(stub, "1 / 0", context_id=context.id)
    assert events[0].execution_count.execution_count == 3
    errors = [e.error for e in events if e.WhichOneof("event") == "error"]
    assert [(e.name, e.value) for e in errors] == [("ZeroDivisionError", "division by zero")]
    assert "1 / 0" in errors[0].traceback and "\x1b[" not in errors[0].traceback
    assert kinds(events)[-1] == "end"


def _value(value):
    from google.protobuf import json_format

    return json_format.MessageToDict(value)


def test_chart_and_image_results(stub) -> None:
    events = run(stub, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 5, 6])\nplt.title('t')\nplt.show()",
                 language="python")
    figures = [e.result for e in events if e.WhichOneof("event") == "result"]
    assert len(figures) == 1 and figures[0].png and not figures[0].is_main_result
    chart = _value(figures[0].chart)
    assert chart["type"] == "line" and chart["title"] == "t" and chart["x_unit"] is None


def test_contexts_crud_and_restart(stub, user_home: Path) -> None:
    first = create(stub, cwd=str(user_home))
    second = create(stub, language="PYTHON ")
    assert (first.language, first.cwd, first.user) == ("python", str(user_home), "user")
    assert second.cwd == "/home/user"  # the user's home
    listed = stub.ListContexts(pb.ListContextsRequest(), timeout=TIMEOUT).contexts
    assert [c.id for c in listed][-2:] == [first.id, second.id]  # creation order

    assert main_text(run(stub, "import os\nx = 5\nos.getcwd()", context_id=first.id)) == str(user_home)
    stub.RestartContext(pb.RestartContextRequest(context_id=first.id), timeout=TIMEOUT)
    assert [c.id for c in stub.ListContexts(pb.ListContextsRequest(), timeout=TIMEOUT).contexts][-2:] == [
        first.id, second.id]
    events = run(stub, "x", context_id=first.id)
    assert events[0].execution_count.execution_count == 1  # fresh kernel, same id
    assert [e.error.name for e in events if e.WhichOneof("event") == "error"] == ["NameError"]
    assert main_text(run(stub, "import os; os.getuid()", context_id=first.id)) == "1001"  # still its user's

    stub.RemoveContext(pb.RemoveContextRequest(context_id=second.id), timeout=TIMEOUT)
    assert second.id not in [c.id for c in stub.ListContexts(pb.ListContextsRequest(), timeout=TIMEOUT).contexts]
    err = rpc_error(stub.RemoveContext, pb.RemoveContextRequest(context_id=second.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == f"Context {second.id} not found"
    err = rpc_error(stub.Execute, pb.ExecuteRequest(code="1", context_id=second.id))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def _first_cell_started(call) -> list[pb.ExecuteResponse]:
    seen = []
    for event in call:
        seen.append(event)
        if event.WhichOneof("event") == "stdout" and "started" in event.stdout.text:
            return seen
    raise AssertionError(f"the cell never started: {seen}")


def test_interrupt_ends_the_running_cell(stub) -> None:
    context = create(stub)
    assert not stub.Interrupt(pb.InterruptRequest(context_id=context.id), timeout=TIMEOUT).interrupted
    run(stub, "kept = 'yes'", context_id=context.id)
    call = stub.Execute(pb.ExecuteRequest(code="import time\nprint('started', flush=True)\ntime.sleep(120)",
                                          context_id=context.id), timeout=TIMEOUT)
    _first_cell_started(call)
    started = time.monotonic()
    assert stub.Interrupt(pb.InterruptRequest(context_id=context.id), timeout=TIMEOUT).interrupted
    rest = list(call)
    assert time.monotonic() - started < 30
    assert [e.error.name for e in rest if e.WhichOneof("event") == "error"] == ["KeyboardInterrupt"]
    assert kinds(rest)[-1] == "end"
    assert main_text(run(stub, "kept", context_id=context.id)) == "yes"  # state survived


def test_client_cancel_interrupts_the_kernel(stub) -> None:
    context = create(stub)
    run(stub, "x = 1", context_id=context.id)
    call = stub.Execute(pb.ExecuteRequest(
        code="import time\nprint('started', flush=True)\nfor _ in range(1200): time.sleep(0.1)\nx = 2",
        context_id=context.id), timeout=TIMEOUT)
    _first_cell_started(call)
    call.cancel()
    # Without the interrupt this would queue behind a 120 s cell (and time out); a restart would lose x.
    started = time.monotonic()
    assert main_text(run(stub, "x", context_id=context.id)) == "1"
    assert time.monotonic() - started < 30


def test_timeout_interrupts_and_ends_in_band(stub) -> None:
    context = create(stub)
    run(stub, "y = 7", context_id=context.id)
    events = run(stub, "import time\nprint('started', flush=True)\ntime.sleep(120)", context_id=context.id,
                 timeout_ms=3000)
    assert stdout(events) == "started\n"
    assert [(e.error.name, e.error.value) for e in events if e.WhichOneof("event") == "error"] == [
        ("TimeoutError", "Execution timed out after 3000 ms; the kernel was interrupted")]
    assert kinds(events)[-1] == "end"
    assert main_text(run(stub, "y", context_id=context.id)) == "7"


def test_env_vars_apply_to_one_execution(stub) -> None:
    context = create(stub)
    code = "import os, subprocess\nprint(os.environ.get('FOO'))\nsubprocess.run(['sh', '-c', 'echo ${FOO-unset}'])"
    events = run(stub, code, context_id=context.id, env_vars={"FOO": 'a "quoted" $value'})
    assert stdout(events) == 'a "quoted" $value\n' * 2  # the kernel's environment, inherited by its children
    events = run(stub, code, context_id=context.id)
    assert stdout(events) == "None\nunset\n"


def test_kernels_run_as_the_context_user(stub, user_home: Path) -> None:
    whoami = "import os, subprocess\nprint(subprocess.run(['id', '-un'], capture_output=True, text=True).stdout, end='')\n" \
             "open('written-by-kernel', 'w').write('x')\n' '.join(map(str, (os.getuid(), os.getgid(), os.environ['HOME'], os.environ['USER'], os.getcwd())))"
    # Default: the request's user (the daemon's default user `user`); cwd its home.
    mine = create(stub, cwd=str(user_home))
    events = run(stub, whoami, context_id=mine.id)
    assert stdout(events) == "user\n"
    assert main_text(events) == f"1001 1001 /home/user user {user_home}"
    assert (user_home / "written-by-kernel").stat().st_uid == 1001
    # Asked for explicitly, or by Basic auth: root.
    for context in (create(stub, user="root", cwd=str(user_home)), create(stub, metadata=[basic("root")])):
        assert context.user == "root"
        events = run(stub, whoami.replace("written-by-kernel", f"{user_home}/by-root"), context_id=context.id)
        assert stdout(events) == "root\n" and main_text(events).startswith("0 0 /root root ")
    assert (user_home / "by-root").stat().st_uid == 0
    # Without a context: the request user's own default context.
    assert main_text(run(stub, "import os; os.getuid()")) == "1001"
    assert main_text(run(stub, "import os; os.getuid()", metadata=[basic("root")])) == "0"
    assert main_text(run(stub, "import os; os.getuid()", language="python")) == "1001"


def test_bad_input_gets_a_clear_status(stub) -> None:
    cases = [
        (stub.CreateContext, pb.CreateContextRequest(language="cobol"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown language 'cobol': No such kernel named cobol"),
        (stub.Execute, pb.ExecuteRequest(code="1", language="cobol"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown language 'cobol'"),
        (stub.Execute, pb.ExecuteRequest(code="1", context_id="nope"), grpc.StatusCode.NOT_FOUND,
         "Context nope not found"),
        (stub.Execute, pb.ExecuteRequest(code=""), grpc.StatusCode.INVALID_ARGUMENT, "code is empty"),
        (stub.CreateContext, pb.CreateContextRequest(user="nobody-here"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown user 'nobody-here'"),
        (stub.CreateContext, pb.CreateContextRequest(cwd="/does/not/exist"), grpc.StatusCode.INVALID_ARGUMENT,
         "cwd '/does/not/exist' is not a directory"),
        (stub.RestartContext, pb.RestartContextRequest(), grpc.StatusCode.INVALID_ARGUMENT, "context_id is empty"),
        (stub.Interrupt, pb.InterruptRequest(context_id="nope"), grpc.StatusCode.NOT_FOUND, "Context nope not found"),
    ]
    for method, request, code, message in cases:
        err = rpc_error(method, request)
        assert (err.code(), message in err.details()) == (code, True), (request, err.details())
    err = rpc_error(stub.ListContexts, pb.ListContextsRequest(), metadata=[basic("ghost")])
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and err.details() == "invalid username: 'ghost'"
    assert stub.ListContexts(pb.ListContextsRequest(), timeout=TIMEOUT) is not None  # still serving


def _envelopes(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while data:
        flags, length = struct.unpack(">BI", data[:5])
        frames.append((flags, data[5 : 5 + length]))
        data = data[5 + length :]
    return frames


def test_connect_json_and_grpc_web(stub, code_daemon: Daemon) -> None:
    url = f"{code_daemon.url}/code.Interpreter"
    created = httpx.post(f"{url}/CreateContext", json={"language": "python"}, timeout=TIMEOUT)
    assert created.status_code == 200, created.text
    context = created.json()["context"]
    assert context["language"] == "python" and context["user"] == "user"

    body = json.dumps({"code": "print('hi')\n6 * 7", "contextId": context["id"]}).encode()
    r = httpx.post(f"{url}/Execute", content=struct.pack(">BI", 0, len(body)) + body, timeout=TIMEOUT,
                   headers={"content-type": "application/connect+json", "connect-protocol-version": "1"})
    frames = _envelopes(r.content)
    events = [json.loads(payload) for flags, payload in frames if not flags & 0x02]
    assert [next(iter(e)) for e in events] == ["executionCount", "stdout", "result", "end"]
    assert events[1]["stdout"]["text"] == "hi\n" and events[2]["result"] == {"text": "42", "isMainResult": True}
    assert frames[-1] == (0x02, b"{}")  # end of stream, no error

    listed = httpx.post(f"{url}/ListContexts", content=b"\0\0\0\0\0", timeout=TIMEOUT,
                        headers={"content-type": "application/grpc-web+proto"})
    messages = [payload for flags, payload in _envelopes(listed.content) if not flags & 0x80]
    assert context["id"] in [c.id for c in pb.ListContextsResponse.FromString(messages[0]).contexts]
    assert b"grpc-status:0" in b"".join(p for f, p in _envelopes(listed.content) if f & 0x80).replace(b" ", b"")


def test_access_token_required_when_set(tmp_path: Path, sandbox_user: str, kernels: str) -> None:
    d = start_daemon(tmp_path, "-default-user", sandbox_user, "-kernels-prefix", kernels)
    try:
        assert httpx.post(f"{d.url}/init", json={"accessToken": "s3cret"}).status_code == 204
        # One channel (one HTTP/2 connection): refused calls answer before their body is read, and the
        # connection must survive the body arriving afterwards (envd/hypercorn_h2_fix.py).
        with grpc.insecure_channel(f"127.0.0.1:{d.port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = pb_grpc.InterpreterStub(channel)
            for metadata in (None, [("x-access-token", "wrong")], None):
                assert rpc_error(stub.ListContexts, pb.ListContextsRequest(), metadata=metadata).code() == (
                    grpc.StatusCode.UNAUTHENTICATED)
            for _ in range(2):
                listed = stub.ListContexts(pb.ListContextsRequest(), timeout=TIMEOUT,
                                           metadata=[("x-access-token", "s3cret")])
                assert list(listed.contexts) == []  # nothing started a kernel: no code port, no call yet
    finally:
        stop_daemon(d)


def test_one_core_behind_both_apis(tmp_path: Path, sandbox_user: str, kernels: str) -> None:
    d, http = start_code_daemon(tmp_path, "-default-user", sandbox_user, "-kernels-prefix", kernels)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{d.port}") as channel:
            stub = pb_grpc.InterpreterStub(channel)
            over_http = httpx.post(f"{http}/contexts", json={}, timeout=TIMEOUT).json()
            native = create(stub)
            listed = {c.id: c for c in stub.ListContexts(pb.ListContextsRequest(), timeout=TIMEOUT).contexts}
            # The HTTP API's contexts (the default ones included) run as root (code-interpreter.md §5.1). The
            # default javascript context may appear at any moment, so only the order of ours is checked.
            assert {c.user for i, c in listed.items() if i != native.id} == {"root"} and listed[native.id].user == "user"
            ours = [over_http["id"], native.id]
            assert [i for i in listed if i in ours] == ours
            over_http_listing = [c["id"] for c in httpx.get(f"{http}/contexts", timeout=TIMEOUT).json()]
            assert [i for i in over_http_listing if i in ours] == ours
            lines = httpx.post(f"{http}/execute", json={"code": "import os; os.getuid()", "context_id": native.id},
                               timeout=TIMEOUT).text.splitlines()
            assert {"type": "result", "text": "1001", "extra": {}, "is_main_result": True} in map(json.loads, lines)
            assert main_text(run(stub, "import os; os.getuid()", context_id=over_http["id"])) == "0"
            stub.RemoveContext(pb.RemoveContextRequest(context_id=over_http["id"]), timeout=TIMEOUT)
            assert httpx.delete(f"{http}/contexts/{over_http['id']}", timeout=TIMEOUT).status_code == 404
    finally:
        stop_daemon(d)
