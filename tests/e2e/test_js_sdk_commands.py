"""`sandbox.commands` and `sandbox.pty` through the unmodified JS SDK (npm e2b 2.51.0) in debug mode.

tests/e2e/js/commands.mjs runs every step against the session daemon and prints a JSON report; the tests below
assert on it, one concern each (sdk-expectations.md §3.1, §3.2; envd.md §6).
"""

from __future__ import annotations


import pytest

from tests.e2e.js_project import ok, run_script

pytestmark = pytest.mark.sdk

@pytest.fixture(scope="module")
def report(daemon) -> dict:
    return run_script("commands.mjs", daemon.url, 180)


def test_run_foreground(report):
    ok(report, "run")
    assert report["run"] == {"stdout": "hello\n", "stderr": "oops\n", "exitCode": 0, "error": None}


def test_streaming_callbacks_in_order(report):
    ok(report, "streaming")
    r = report["streaming"]
    assert r["events"] == [
        ["out", "out1\n"], ["err", "err1\n"], ["out", "out2\n"], ["err", "err2\n"], ["out", "out3\n"], ["err", "err3\n"],
    ]
    assert (r["stdout"], r["stderr"]) == ("out1\nout2\nout3\n", "err1\nerr2\nerr3\n")


def test_envs_cwd_and_user(report):
    ok(report, "envsCwdUser")
    assert report["envsCwdUser"] == {
        "envs": "from-js\n", "cwd": "/tmp\n", "user": "user\n/home/user\n", "root": "root\n/root\n",
    }


def test_nonzero_exit_is_command_exit_error(report):
    ok(report, "exitError")
    assert report["exitError"] == {
        "name": "CommandExitError", "exitCode": 3, "error": "exit status 3", "stdout": "out\n", "stderr": "err\n",
    }


def test_command_not_found_exits_127(report):
    ok(report, "notFound")
    r = report["notFound"]
    assert (r["name"], r["exitCode"]) == ("CommandExitError", 127)
    assert "not found" in r["stderr"]


def test_invalid_utf8_and_split_characters(report):
    ok(report, "brokenUtf8")
    # TextDecoder (stream mode) replaces invalid bytes with U+FFFD and joins a character split across reads;
    # the incomplete tail at the end is flushed as one U+FFFD.
    assert report["brokenUtf8"]["stdout"] == "a\ufffd\ufffdb\u20ac\ufffd"


def test_timeout_is_timeout_error_and_kills(report):
    ok(report, "timeout")
    r = report["timeout"]
    assert r["name"] == "TimeoutError", r
    assert r["elapsedMs"] < 5000 and r["pid"], r
    assert r["gone"] is True, "the command outlived its timeoutMs (envd.md §6.6)"


def test_background_list_and_kill(report):
    ok(report, "backgroundKill")
    r = report["backgroundKill"]
    assert r["listed"] == {"pid": r["pid"], "args": ["-l", "-c", "sleep 30"], "envs": {}, "cmd": "/bin/bash"}
    assert r["killed"] is True
    assert (r["waitError"]["name"], r["waitError"]["exitCode"], r["waitError"]["error"]) == (
        "CommandExitError", -1, "signal: killed",
    )
    assert r["gone"] is True
    assert r["again"] is False


def test_stdin_and_close(report):
    ok(report, "stdin", "stdinOff")
    r = report["stdin"]
    assert r["chunks"][0] == "hello from js\n"
    assert (r["stdout"], r["exitCode"]) == ("hello from js\nab", 0)
    assert report["stdinOff"]["stdout"] == "done\n" and report["stdinOff"]["elapsedMs"] < 3000


def test_connect_from_second_client(report):
    ok(report, "connect")
    r = report["connect"]
    assert r["first"] == "first\ngot:x\n"
    assert r["second"] == "got:x\n" and r["seen"] == ["got:x\n"]
    assert r["missing"] == "NotFoundError"


def test_pty_create_input_resize_kill(report):
    ok(report, "pty", "ptyExit")
    r = report["pty"]
    assert r["before"] == ["24 80", "xterm-256color"]
    assert r["after"] == ["30 100", "100"]
    assert (r["killed"], r["exitCode"], r["gone"], r["again"]) == (True, -1, True, False)
    assert report["ptyExit"] == {"exitCode": 0}
