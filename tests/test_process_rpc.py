"""process.Process through the real daemon (spec/envd.md §6, §4.5-4.6): plain Connect JSON with httpx (streams
parsed envelope by envelope), the binary codec, and grpcio over h2c — every method and every bad input."""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import httpx
import psutil
import pytest

from envd.spec.process import process_pb2 as pb
from envd.spec.process import process_pb2_grpc as pb_grpc
from tests.connect_wire import basic_auth as basic
from tests.connect_wire import envelope, read_envelopes
from tests.pids import alive, wait_gone

CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1"}
CONNECT_STREAM = {"content-type": "application/connect+json", "connect-protocol-version": "1"}
END_STREAM = 0x02


def call(daemon, method: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{daemon.url}/process.Process/{method}",
        content=json.dumps(body).encode(),
        headers={**CONNECT_JSON, **(headers or {})},
        timeout=10,
    )


@contextmanager
def stream(daemon, method: str, body: dict, headers: dict | None = None) -> Iterator[Iterator[tuple[int, dict]]]:
    with httpx.Client(timeout=30) as client:
        with client.stream(
            "POST",
            f"{daemon.url}/process.Process/{method}",
            content=envelope(json.dumps(body).encode()),
            headers={**CONNECT_STREAM, **(headers or {})},
        ) as response:
            assert response.status_code == 200
            yield read_envelopes(response.iter_raw())


class Run:
    """A whole stream: events in order, decoded output, the end event and the end-of-stream payload."""

    def __init__(self, envelopes: Iterator[tuple[int, dict]]) -> None:
        self.kinds: list[str] = []
        self.pid: int | None = None
        self.output: dict[str, bytes] = {}
        self.end: dict | None = None
        self.trailer: dict | None = None
        for flags, message in envelopes:
            if flags & END_STREAM:
                self.trailer = message
                continue
            assert self.trailer is None
            (kind, value), = message["event"].items()
            self.kinds.append(kind)
            if kind == "start":
                self.pid = value["pid"]
            elif kind == "data":
                (name, data), = value.items()
                self.output[name] = self.output.get(name, b"") + base64.b64decode(data)
            elif kind == "end":
                self.end = value

    @property
    def error(self) -> dict | None:
        return (self.trailer or {}).get("error")


def run(daemon, body: dict, headers: dict | None = None, method: str = "Start") -> Run:
    with stream(daemon, method, body, headers) as envelopes:
        return Run(envelopes)


def sh(script: str, **extra) -> dict:
    return {"process": {"cmd": "/bin/sh", "args": ["-c", script]}, "stdin": False, **extra}


def kill(daemon, pid: int) -> httpx.Response:
    return call(daemon, "SendSignal", {"process": {"pid": pid}, "signal": "SIGNAL_SIGKILL"})


def still_serving(daemon) -> None:
    r = run(daemon, sh("echo ok"))
    assert r.output == {"stdout": b"ok\n"} and r.trailer == {}


@contextmanager
def background(daemon, body: dict, headers: dict | None = None) -> Iterator[tuple[int, Iterator[tuple[int, dict]]]]:
    """A Start stream kept open; yields (pid, the rest of the stream); kills the process afterwards."""
    with stream(daemon, "Start", body, headers) as envelopes:
        flags, first = next(envelopes)
        pid = first["event"]["start"]["pid"]
        try:
            yield pid, envelopes
        finally:
            kill(daemon, pid)


# -- Start -----------------------------------------------------------------------------------------


def test_start_streams_start_data_end(daemon) -> None:
    r = run(daemon, sh("echo hi; echo oops >&2"))
    assert r.kinds[0] == "start" and r.kinds[-1] == "end" and set(r.kinds[1:-1]) == {"data"}
    assert r.pid and r.pid > 1
    assert r.output == {"stdout": b"hi\n", "stderr": b"oops\n"}
    assert r.end == {"exited": True, "status": "exit status 0"}  # exitCode 0 and error omitted
    assert r.trailer == {}
    assert not alive(r.pid)  # reaped before the end was sent


def test_nonzero_exit_and_signal_death(daemon) -> None:
    assert run(daemon, sh("exit 3")).end == {"exitCode": 3, "exited": True, "status": "exit status 3", "error": "exit status 3"}
    end = run(daemon, sh("kill -TERM $$")).end
    assert end == {"exitCode": -1, "status": "signal: terminated", "error": "signal: terminated"}


def test_missing_command_exits_127_not_an_rpc_error(daemon) -> None:
    r = run(daemon, {"process": {"cmd": "/no/such/command"}})
    assert r.trailer == {} and r.end["exitCode"] == 127
    assert b"/no/such/command" in r.output["stderr"]
    r = run(daemon, {"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "no-such-command-here"]}})
    assert r.end["exitCode"] == 127 and b"not found" in r.output["stderr"]


def test_runs_as_the_user_in_home_with_exact_environment(daemon) -> None:
    r = run(daemon, {"process": {"cmd": "/bin/sh", "args": ["-c", "id -un; pwd; env | sort"], "envs": {"HOME": "/x", "A": "1"}}})
    lines = r.output["stdout"].decode().splitlines()
    assert lines[:2] == ["user", "/home/user"]
    env = dict(line.split("=", 1) for line in lines[2:])
    for name in ("PWD", "SHLVL", "_"):
        env.pop(name, None)
    assert env == {"PATH": os.environ["PATH"], "HOME": "/x", "USER": "user", "LOGNAME": "user", "E2B_SANDBOX": "false", "A": "1"}
    assert run(daemon, sh("id -u"), basic("root")).output["stdout"] == b"0\n"


def test_child_inherits_no_daemon_fds(daemon) -> None:
    # hypercorn marks its listening socket inheritable; a child holding it would keep the port bound.
    for _ in range(3):
        r = run(daemon, sh("ls /proc/self/fd"))
        assert r.output["stdout"].split() == [b"0", b"1", b"2", b"3"]  # 3: ls's own listing


def test_cwd_relative_to_home_and_missing_cwd(daemon, user_home) -> None:
    r = run(daemon, {"process": {"cmd": "pwd", "cwd": user_home.name}})
    assert r.output["stdout"].decode().strip() == str(user_home)
    r = run(daemon, {"process": {"cmd": "pwd", "cwd": "/no/such/dir"}})
    assert r.kinds == [] and r.error == {"code": "invalid_argument", "message": "cwd '/no/such/dir' does not exist"}
    still_serving(daemon)


def test_unknown_user_is_unauthenticated(daemon) -> None:
    r = run(daemon, sh("true"), basic("no-such-user"))
    assert r.kinds == [] and r.error == {"code": "unauthenticated", "message": "invalid username: 'no-such-user'"}


def test_unparsable_timeout_header_is_invalid_argument(daemon) -> None:
    with httpx.Client(timeout=10) as client:
        response = client.post(
            f"{daemon.url}/process.Process/Start",
            content=envelope(json.dumps(sh("true")).encode()),
            headers={**CONNECT_STREAM, "connect-timeout-ms": "soon"},
        )
    if response.headers["content-type"].startswith("application/connect"):
        (flags, message), = read_envelopes([response.content])
        error = message["error"]
    else:
        error = response.json()
    assert error["code"] == "invalid_argument" and "soon" in error["message"]
    still_serving(daemon)


def test_keepalives_while_idle(daemon) -> None:
    r = run(daemon, sh("sleep 1.3; echo done"), {"keepalive-ping-interval": "1"})
    assert r.kinds == ["start", "keepalive", "data", "end"]


def test_pty_output_and_typed_exit(daemon) -> None:
    body = {"process": {"cmd": "/bin/sh", "args": ["-c", "stty size; read x; echo got $x"]}, "pty": {"size": {"cols": 90, "rows": 20}}}
    with background(daemon, body) as (pid, envelopes):
        _, first = next(envelopes)
        assert base64.b64decode(first["event"]["data"]["pty"]) == b"20 90\r\n"
        assert call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"pty": base64.b64encode(b"abc\n").decode()}}).status_code == 200
        r = Run(envelopes)
    assert b"got abc" in r.output["pty"] and set(r.output) == {"pty"}
    assert r.end == {"exited": True, "status": "exit status 0"}


# -- lifetime, disconnects, cleanup ---------------------------------------------------------------


def test_lifetime_limit_kills_the_process(daemon) -> None:
    begin = time.monotonic()
    r = run(daemon, sh("exec sleep 30"), {"connect-timeout-ms": "700"})
    assert r.error["code"] == "deadline_exceeded"
    assert 0.6 < time.monotonic() - begin < 5
    assert wait_gone(r.pid)


def test_lifetime_limit_applies_after_the_client_left(daemon) -> None:
    with stream(daemon, "Start", sh("exec sleep 30"), {"connect-timeout-ms": "800"}) as envelopes:
        pid = next(envelopes)[1]["event"]["start"]["pid"]
    time.sleep(0.2)
    assert alive(pid)
    assert wait_gone(pid)


def test_disconnecting_client_leaves_the_process_running(daemon) -> None:
    with stream(daemon, "Start", sh("exec sleep 30")) as envelopes:
        pid = next(envelopes)[1]["event"]["start"]["pid"]
    time.sleep(0.3)
    assert alive(pid)
    listed = call(daemon, "List", {}).json()["processes"]
    assert pid in [p["pid"] for p in listed]
    assert kill(daemon, pid).status_code == 200
    assert wait_gone(pid)


def daemon_children(daemon) -> tuple[int, int]:
    proc = psutil.Process(daemon.process.pid)
    children = proc.children()
    return proc.num_fds(), sum(1 for c in children if c.status() == psutil.STATUS_ZOMBIE)


def test_no_fd_or_zombie_left_behind(daemon) -> None:
    still_serving(daemon)
    fds_before, zombies_before = daemon_children(daemon)
    for _ in range(3):
        run(daemon, sh("echo x; echo y >&2"))
        run(daemon, {"process": {"cmd": "/bin/sh", "args": ["-c", "echo tty"]}, "pty": {"size": {"cols": 80, "rows": 24}}})
        run(daemon, {"process": {"cmd": "/no/such"}})
        run(daemon, {"process": {"cmd": "true", "cwd": "/no/such"}})
        with stream(daemon, "Start", {"process": {"cmd": "cat"}}) as envelopes:  # stdin pipe, client leaves
            pid = next(envelopes)[1]["event"]["start"]["pid"]
        assert call(daemon, "CloseStdin", {"process": {"pid": pid}}).status_code == 200
        assert wait_gone(pid)
        r = run(daemon, sh("exec sleep 30"), {"connect-timeout-ms": "300"})
        assert wait_gone(r.pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fds, zombies = daemon_children(daemon)
        if fds <= fds_before and zombies <= zombies_before:
            break
        time.sleep(0.05)
    # <=: a connection left over from an earlier test may close meanwhile.
    assert fds <= fds_before and zombies == zombies_before == 0


# -- Connect ---------------------------------------------------------------------------------------


def test_connect_to_live_then_retained_process(daemon) -> None:
    with background(daemon, sh("read x; echo got $x", stdin=True)) as (pid, start_stream):
        with stream(daemon, "Connect", {"process": {"pid": pid}}) as envelopes:
            assert next(envelopes)[1] == {"event": {"start": {"pid": pid}}}
            call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"stdin": base64.b64encode(b"1\n").decode()}})
            r = Run(envelopes)
        assert r.output == {"stdout": b"got 1\n"} and r.end["status"] == "exit status 0" and r.trailer == {}
        assert Run(start_stream).output == {"stdout": b"got 1\n"}  # the Start stream saw the same
    r = run(daemon, {"process": {"pid": pid}}, method="Connect")  # ended < 30 s ago: start + end
    assert r.kinds == ["start", "end"] and r.pid == pid and r.end["status"] == "exit status 0"


def test_connect_errors(daemon) -> None:
    r = run(daemon, {"process": {"pid": 999999}}, method="Connect")
    assert r.error == {"code": "not_found", "message": "process with pid 999999 not found"}
    r = run(daemon, {"process": {"tag": "nope"}}, method="Connect")
    assert r.error == {"code": "not_found", "message": "process with tag nope not found"}
    r = run(daemon, {"process": {}}, method="Connect")
    assert r.error["code"] == "unimplemented" and r.error["message"].startswith("invalid input type")


def test_connect_and_list_by_tag(daemon) -> None:
    body = {"process": {"cmd": "sleep", "args": ["30"], "envs": {"K": "V"}, "cwd": "/tmp"}, "tag": "t1", "stdin": False}
    with background(daemon, body) as (pid, _), background(daemon, sh("sleep 30", tag="t2")) as (pid2, _):
        with background(daemon, sh("sleep 30")) as (untagged, _):
            listed = {p["pid"]: p for p in call(daemon, "List", {}).json()["processes"]}
            assert listed[pid] == {"pid": pid, "tag": "t1", "config": {"cmd": "sleep", "args": ["30"], "envs": {"K": "V"}, "cwd": "/tmp"}}
            assert listed[untagged] == {"pid": untagged, "config": {"cmd": "/bin/sh", "args": ["-c", "sleep 30"]}}
            with stream(daemon, "Connect", {"process": {"tag": "t2"}}) as envelopes:
                assert next(envelopes)[1] == {"event": {"start": {"pid": pid2}}}


# -- input, signals, resize ------------------------------------------------------------------------


def test_send_input_close_stdin_and_their_errors(daemon) -> None:
    script = {"process": {"cmd": "/bin/sh", "args": ["-c", "cat; echo eof; exec sleep 30"]}}  # stdin absent: a pipe
    with background(daemon, script) as (pid, envelopes):
        data = base64.b64encode(b"hello").decode()
        assert call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"stdin": data}}).json() == {}
        assert next(envelopes)[1] == {"event": {"data": {"stdout": data}}}  # one write, one chunk
        r = call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"pty": data}})
        assert r.status_code == 500 and r.json() == {
            "code": "internal",
            "message": "error writing to tty: tty not assigned to process — input should be written to the stdin, not the tty",
        }
        r = call(daemon, "SendInput", {"process": {"pid": pid}, "input": {}})
        assert r.status_code == 501 and r.json()["code"] == "unimplemented"
        r = call(daemon, "Update", {"process": {"pid": pid}, "pty": {"size": {"cols": 1, "rows": 1}}})
        assert r.status_code == 500 and r.json() == {"code": "internal", "message": "error resizing tty: tty not assigned to process"}
        assert call(daemon, "Update", {"process": {"pid": pid}}).json() == {}  # no pty: nothing to do
        assert call(daemon, "CloseStdin", {"process": {"pid": pid}}).json() == {}
        assert call(daemon, "CloseStdin", {"process": {"pid": pid}}).json() == {}  # idempotent
        assert next(envelopes)[1] == {"event": {"data": {"stdout": base64.b64encode(b"eof\n").decode()}}}
        assert kill(daemon, pid).json() == {}
        assert Run(envelopes).end["status"] == "signal: killed"
    r = call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"stdin": data}})  # finished
    assert r.status_code == 404 and r.json() == {"code": "not_found", "message": f"process with pid {pid} not found"}
    for method, body in (
        ("SendInput", {"process": {"pid": 999999}, "input": {"stdin": data}}),
        ("SendInput", {"process": {"tag": "nope"}, "input": {"stdin": data}}),
        ("CloseStdin", {"process": {"pid": 999999}}),
        ("Update", {"process": {"pid": 999999}, "pty": {"size": {"cols": 1, "rows": 1}}}),
        ("SendSignal", {"process": {"pid": 999999}, "signal": "SIGNAL_SIGKILL"}),
        ("SendSignal", {"process": {"tag": "nope"}, "signal": "SIGNAL_SIGKILL"}),
    ):
        r = call(daemon, method, body)
        assert r.status_code == 404 and r.json()["code"] == "not_found", method
    still_serving(daemon)


def test_stdin_disabled_and_pty_stdin_errors(daemon) -> None:
    with background(daemon, sh("sleep 30")) as (pid, _):  # stdin false
        r = call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"stdin": "eA=="}})
        assert r.status_code == 500 and r.json()["message"] == "error writing to stdin: stdin not enabled or closed"
    pty_body = {"process": {"cmd": "cat"}, "pty": {"size": {"cols": 80, "rows": 24}}, "stdin": True}
    with background(daemon, pty_body) as (pid, _):
        r = call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"stdin": "eA=="}})
        assert r.status_code == 500 and r.json()["message"] == (
            "error writing to stdin: tty assigned to process — input should be written to the pty, not the stdin"
        )
        r = call(daemon, "CloseStdin", {"process": {"pid": pid}})
        assert r.status_code == 500 and r.json() == {
            "code": "unknown",
            "message": "error closing stdin: cannot close stdin for PTY process — send Ctrl+D (0x04) instead",
        }


def test_resize_reaches_the_terminal(daemon) -> None:
    body = {"process": {"cmd": "/bin/sh", "args": ["-c", "read x; stty size"]}, "pty": {"size": {"cols": 80, "rows": 24}}}
    with background(daemon, body) as (pid, envelopes):
        assert call(daemon, "Update", {"process": {"pid": pid}, "pty": {"size": {"cols": 100, "rows": 30}}}).json() == {}
        call(daemon, "SendInput", {"process": {"pid": pid}, "input": {"pty": base64.b64encode(b"\n").decode()}})
        assert b"30 100" in Run(envelopes).output["pty"]


def test_send_signal(daemon) -> None:
    with background(daemon, sh("sleep 30")) as (pid, envelopes):
        r = call(daemon, "SendSignal", {"process": {"pid": pid}, "signal": "SIGNAL_UNSPECIFIED"})
        assert r.status_code == 501 and r.json() == {"code": "unimplemented", "message": "invalid signal: SIGNAL_UNSPECIFIED"}
        assert call(daemon, "SendSignal", {"process": {"pid": pid}, "signal": "SIGNAL_SIGTERM"}).json() == {}
        assert Run(envelopes).end == {"exitCode": -1, "status": "signal: terminated", "error": "signal: terminated"}
    assert not alive(pid)
    r = kill(daemon, pid)  # what the SDK's kill() sees for a finished process: not_found -> False
    assert r.status_code == 404


def test_stream_input_over_http1(daemon) -> None:
    with background(daemon, {"process": {"cmd": "cat"}}) as (pid, envelopes):
        frames = [
            {"start": {"process": {"pid": pid}}},
            {"data": {"input": {"stdin": base64.b64encode(b"one ").decode()}}},
            {"keepalive": {}},
            {"data": {"input": {"stdin": base64.b64encode(b"two").decode()}}},
        ]

        def body() -> Iterator[bytes]:  # chunked upload, frame by frame
            for frame in frames:
                yield envelope(json.dumps(frame).encode())

        r = httpx.post(f"{daemon.url}/process.Process/StreamInput", content=body(), headers=CONNECT_STREAM, timeout=10)
        assert r.status_code == 200
        assert [m for _, m in read_envelopes([r.content])] == [{}, {}]  # the empty response, then end-of-stream
        got = b""
        while got != b"one two":
            got += base64.b64decode(next(envelopes)[1]["event"]["data"]["stdout"])


def stream_input(daemon, frames: list[dict]) -> dict:
    payload = b"".join(envelope(json.dumps(frame).encode()) for frame in frames)
    r = httpx.post(f"{daemon.url}/process.Process/StreamInput", content=payload, headers=CONNECT_STREAM, timeout=10)
    return [m for _, m in read_envelopes([r.content])][-1]


def test_stream_input_errors(daemon) -> None:
    data = {"data": {"input": {"stdin": "eA=="}}}
    assert stream_input(daemon, [data])["error"]["code"] == "failed_precondition"
    assert stream_input(daemon, [{"start": {"process": {"pid": 999999}}}, data])["error"] == {
        "code": "not_found", "message": "process with pid 999999 not found"
    }
    assert stream_input(daemon, [{}])["error"]["code"] == "unimplemented"
    still_serving(daemon)


# -- binary codec and gRPC -------------------------------------------------------------------------


def test_connect_binary_start(daemon) -> None:
    request = pb.StartRequest(process=pb.ProcessConfig(cmd="/bin/sh", args=["-c", "echo bin; kill -9 $$"]), stdin=False)
    r = httpx.post(
        f"{daemon.url}/process.Process/Start",
        content=envelope(request.SerializeToString()),
        headers={"content-type": "application/connect+proto", "connect-protocol-version": "1"},
        timeout=10,
    )
    frames = []
    data = r.content
    while data:
        flags, length = struct.unpack(">BI", data[:5])
        frames.append((flags, data[5 : 5 + length]))
        data = data[5 + length :]
    events = [pb.StartResponse.FromString(payload).event for flags, payload in frames if not flags & END_STREAM]
    assert events[0].start.pid > 0 and events[1].data.stdout == b"bin\n"
    assert events[-1].end.exit_code == -1 and events[-1].end.status == "signal: killed"  # sint32 on the wire


@pytest.fixture
def stub(daemon):
    with grpc.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
        yield pb_grpc.ProcessStub(channel)


def test_grpc_deadline_limits_the_process(stub) -> None:
    call_ = stub.Start(pb.StartRequest(process=pb.ProcessConfig(cmd="sleep", args=["30"]), stdin=False), timeout=0.8)
    pid = next(call_).event.start.pid
    with pytest.raises(grpc.RpcError) as err:
        for _ in call_:
            pass
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_gone(pid)  # §6.6: a port offering gRPC applies its deadline to the process too


def test_grpc_stream_input_and_signal(stub) -> None:
    call_ = stub.Start(pb.StartRequest(process=pb.ProcessConfig(cmd="cat")), timeout=20)
    pid = next(call_).event.start.pid
    selector = pb.ProcessSelector(pid=pid)
    inputs = [
        pb.StreamInputRequest(start=pb.StreamInputRequest.StartEvent(process=selector)),
        pb.StreamInputRequest(data=pb.StreamInputRequest.DataEvent(input=pb.ProcessInput(stdin=b"over h2"))),
    ]
    assert stub.StreamInput(iter(inputs), timeout=10) == pb.StreamInputResponse()
    assert next(call_).event.data.stdout == b"over h2"
    stub.CloseStdin(pb.CloseStdinRequest(process=selector), timeout=10)
    events = list(call_)
    assert events[-1].event.end.status == "exit status 0"
    with pytest.raises(grpc.RpcError) as err:
        stub.SendSignal(pb.SendSignalRequest(process=selector, signal=pb.SIGNAL_SIGKILL), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_many_concurrent_starts(daemon) -> None:
    results: list[Run] = []

    def one(i: int) -> None:
        results.append(run(daemon, sh(f"echo {i}")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(r.output["stdout"]) for r in results) == list(range(40))
    assert all(r.end["status"] == "exit status 0" for r in results)


def test_signal_names_match_go(daemon) -> None:
    assert run(daemon, sh(f"kill -{signal.SIGSEGV.value} $$")).end["status"].startswith("signal: segmentation fault")
