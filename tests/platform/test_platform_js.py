"""The unmodified JS SDK (npm e2b, tests/e2e/js) in normal mode against `envd platform`: create,
commands.run, files, kill. One Node run (platform.mjs) prints a JSON report; the tests assert on it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.js_project import JS_DIR, ensure_node_modules, node_tools

pytestmark = pytest.mark.sdk


@pytest.fixture(scope="module")
def report(platform) -> dict:
    tools = node_tools()
    if tools is None:
        print("skipping JS SDK platform tests: node and npm are not both on PATH")
        pytest.skip("node/npm not installed")
    node, npm = tools
    ensure_node_modules(npm)
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_") or k in
           ("E2B_API_URL", "E2B_API_KEY", "E2B_SANDBOX_URL")}
    assert "E2B_DEBUG" not in env
    proc = subprocess.run([node, "platform.mjs"], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"platform.mjs failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON on stdout:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def ok(report: dict, *steps: str) -> None:
    failed = {s: report["errors"][s] for s in steps if s in report["errors"]}
    assert not failed, f"JS SDK calls failed: {failed}"


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
