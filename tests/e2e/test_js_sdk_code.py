"""`runCode` and code contexts through the unmodified JS SDK `@e2b/code-interpreter` (npm 2.8.0) in debug mode.

tests/e2e/js/code.mjs runs every step against a daemon of this module and prints a JSON report; the tests below
assert on it, one concern each (code-interpreter.md §1.3-§1.6, §2, §4, §10).

The JS SDK sends code-interpreter calls to E2B_SANDBOX_URL when it is set (getSandboxDirectUrl), so the daemon
serves its code port on a free port (`-code-port <free>`) and the script is pointed there: nothing here needs
the fixed port 49999 (tests/e2e/test_sdk_code_interpreter.py covers the SDK's own localhost:49999 path).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from envd.services.code.languages import kernel_spec_name
from tests.conftest import start_code_daemon, stop_daemon
from tests.e2e.js_project import ok, run_script

pytestmark = [pytest.mark.sdk, pytest.mark.slow]

KERNELS = Path("/opt/envd-kernels/share/jupyter/kernels")
PNG_1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def js_kernel_installed() -> bool:
    return (KERNELS / kernel_spec_name("javascript") / "kernel.json").exists()


@pytest.fixture(scope="module")
def js_code_daemon(tmp_path_factory: pytest.TempPathFactory, sandbox_user: str) -> Iterator[str]:
    """A daemon on a free code port: with E2B_SANDBOX_URL set the JS SDK sends code calls there too."""
    if not (KERNELS / "python3" / "kernel.json").exists():
        pytest.fail("the python kernel is not installed: run `make kernels`")
    d, code_url = start_code_daemon(tmp_path_factory.mktemp("envd-js-code"), "-default-user", sandbox_user)
    yield code_url
    stop_daemon(d)
    assert d.process.returncode == 0, "envd did not shut down cleanly"


@pytest.fixture(scope="module")
def cwd_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("js-code-cwd")
    path.chmod(0o755)  # usable whichever user the kernel runs as
    return str(path)


@pytest.fixture(scope="module")
def report(js_code_daemon: str, cwd_dir: str) -> dict:
    return run_script("code.mjs", js_code_daemon, 300, CWD_DIR=cwd_dir, JS_KERNEL="1" if js_kernel_installed() else "0")


def test_state_persists_between_run_code_calls(report):
    ok(report, "state")
    assert report["state"] == {"text": "2", "error": None}


def test_callbacks_arrive_in_stream_order(report):
    ok(report, "streaming")
    r = report["streaming"]
    assert r["events"] == [
        ["stdout", "one\n", False], ["stderr", "two\n", True], ["result", "shown", False],
        ["stdout", "three\n", False], ["result", "last", True],
    ]
    assert (r["text"], r["stdout"], r["stderr"]) == ("last", ["one\n", "three\n"], ["two\n"])


def test_each_result_format(report):
    ok(report, "formats")
    r = report["formats"]
    assert r["error"] is None, r["error"]
    by_format = {fmt: res for res in r["results"][:-1] for fmt in res["formats"]}
    assert by_format["html"]["html"] == "<b>bold</b>"
    assert by_format["markdown"]["markdown"] == "# Title"
    assert by_format["svg"]["svg"].startswith("<svg")
    assert by_format["png"]["png"] == PNG_1x1
    assert base64.b64decode(by_format["png"]["png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert by_format["jpeg"]["jpeg"] == "/9j/AAAA"
    assert by_format["pdf"]["pdf"] == "JVBERi0="
    assert by_format["latex"]["latex"] == "$\\alpha$"
    assert by_format["json"]["json"] == {"k": [1, 2]}
    assert by_format["javascript"]["javascript"] == "console.log(1)"
    # an unknown MIME type travels in the event's `extra` object; the JS SDK keeps that in `raw` and its own
    # `extra` only holds unknown top-level keys, so it stays {} (code-interpreter.md §2.6)
    custom = next(res for res in r["results"] if res["text"] == "custom")
    assert (custom["rawExtra"], custom["extra"]) == ({"application/vnd.custom+json": {"a": 1}}, {})
    assert all(res["rawExtra"] == {} for res in r["results"] if res is not custom)
    assert not any(res["isMainResult"] for res in r["results"][:-1])
    # the cell's value: a dict is the main result, with text and a json rendering
    main = r["results"][-1]
    assert main["isMainResult"] is True
    assert main["text"] == "{'a': 1, 'b': [1.5, None]}"
    assert main["json"] == {"a": 1, "b": [1.5, None]}
    assert len(r["results"]) == 11


def test_error_has_name_value_and_colourless_traceback(report):
    ok(report, "error")
    r = report["error"]
    assert (r["name"], r["value"]) == ("NameError", "name 'undefined_name_xyz' is not defined")
    assert "undefined_name_xyz" in r["traceback"] and "\x1b" not in r["traceback"]
    assert r["seen"] == [["stdout", "before\n"], ["error", "NameError"]]  # in order; onError once (§1.4)
    assert (r["stdout"], r["results"]) == (["before\n"], 0)


def test_execution_count_counts_user_cells_only(report):
    ok(report, "executionCount")
    assert report["executionCount"] == [1, 2, 3]


def test_contexts_create_list_restart_remove(report, cwd_dir):
    ok(report, "contexts")
    r = report["contexts"]
    created = r["created"]
    assert set(created) == {"id", "language", "cwd"} and created["id"]
    assert (created["language"], created["cwd"]) == ("python", cwd_dir)
    assert r["listed"][-1] == created  # creation order (§1.5)
    assert r["listed"][0]["language"] == "python" and r["listed"][0]["cwd"] == "/home/user"  # the default
    assert r["cwd"] == cwd_dir
    assert (r["before"], r["inDefault"]) == ("5", "NameError")  # contexts do not share state
    # restart wipes the state, starts the counter again, keeps id, list position and cwd
    assert r["afterRestart"] == {"error": "NameError", "count": 1}
    assert r["listedAfterRestart"] == r["listedIdsBefore"]
    assert r["cwdAfterRestart"] == cwd_dir
    assert r["afterRemove"] == [i for i in r["listedIdsBefore"] if i != created["id"]]


def test_per_execution_env_vars_are_restored(report):
    ok(report, "envs")
    assert report["envs"] == {
        "during": "('b\\'a\"r', 'b\\'a\"r\\n')",  # in os.environ and in child processes, quotes intact
        "after": "default",
        "otherContext": "x",
        "otherAfter": "default",
    }


def test_timeout_interrupts_and_the_context_stays_usable(report):
    ok(report, "timeout")
    r = report["timeout"]
    assert r["error"]["name"] == "TimeoutError" and "Execution timed out" in r["error"]["message"], r
    assert r["timedOutMs"] < 15000, r
    # interrupted (the client left), not restarted: the state is kept and the next run is not stuck behind
    # the 300 s sleep
    assert (r["next"], r["nextError"]) == ("42", None), r
    assert r["totalMs"] < 60000, r


def test_unknown_context_and_bad_arguments(report):
    ok(report, "unknownContext")
    r = report["unknownContext"]
    for call in ("run", "remove", "restart"):  # 404 with the spec's text (§1.5)
        assert r[call] == {"name": "NotFoundError", "message": "Context nope not found"}, call
    assert r["both"]["name"] == "InvalidArgumentError"
    assert r["language"]["name"] == "SandboxError" and r["language"]["message"].startswith("500"), r["language"]


def test_javascript_context(report):
    if not js_kernel_installed():
        reason = f"no `{kernel_spec_name('javascript')}` kernelspec in {KERNELS} (make kernels installs it)"
        print(f"skipping the JS-language run: {reason}")
        pytest.skip(reason)
    ok(report, "javascript")
    r = report["javascript"]
    assert (r["language"], r["text"], "".join(r["stdout"]), r["error"]) == ("javascript", "42", "from js\n", None)
