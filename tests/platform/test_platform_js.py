"""The unmodified JS SDK (npm e2b, tests/e2e/js) in normal mode against `envd platform`: create,
commands.run, files, kill. One Node run (platform.mjs) prints a JSON report; the tests assert on it."""

from __future__ import annotations

import os

import pytest

from tests.e2e.js_project import ok, run_report

pytestmark = pytest.mark.sdk


@pytest.fixture(scope="module")
def report(platform) -> dict:
    # Normal mode: the platform's URLs and key from the module's environment, never E2B_DEBUG.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("E2B_") or k in ("E2B_API_URL", "E2B_API_KEY", "E2B_SANDBOX_URL")}
    return run_report("platform.mjs", env)


def test_create_and_commands(report):
    ok(report, "run", "runFails")
    assert report["sandboxId"].startswith("i")
    assert report["run"] == {"stdout": "hello from js\nuser\n/home/user\n", "exitCode": 0}
    assert report["runFails"] == {"exitCode": 4, "stderr": "oops\n"}


def test_files(report):
    ok(report, "write", "read", "list")
    assert report["write"] == "/home/user/js/hello.txt"
    assert report["read"] == "written by js"
    assert report["list"] == ["hello.txt"]


def test_info_and_kill(report, platform):
    ok(report, "info", "runningBeforeKill", "kill", "runningAfterKill", "killAgain")
    assert report["info"] == {"templateId": "base", "state": "running", "metadata": {"via": "js"}}
    assert report["runningBeforeKill"] is True
    assert report["kill"] is True
    assert report["runningAfterKill"] is False
    assert report["killAgain"] is False
    assert not (platform.state / "sandboxes" / report["sandboxId"]).exists()
