"""The Node project in tests/e2e/js (the JS SDK pinned by its package-lock.json)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"


def node_tools() -> tuple[str, str] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def ensure_node_modules(npm: str) -> None:
    packages = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    if all((JS_DIR / "node_modules" / name / "package.json").exists() for name in packages):
        return
    # `npm ci` installs exactly the committed package-lock.json.
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_report(script: str, env: dict[str, str], timeout: float = 180) -> dict:
    """Run one of the Node scripts (node_modules installed on demand) with `env` and return the JSON report it
    prints last; skips, saying so, where node/npm are missing."""
    tools = node_tools()
    if tools is None:
        print(f"skipping {script}: node and npm are not both on PATH")
        pytest.skip("node/npm not installed")
    node, npm = tools
    ensure_node_modules(npm)
    proc = subprocess.run([node, script], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON on stdout:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


def run_script(script: str, sandbox_url: str, timeout: float, **env_vars: str) -> dict:
    """run_report in debug mode (E2B_DEBUG, E2B_SANDBOX_URL) against a daemon at `sandbox_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_DEBUG="true", E2B_SANDBOX_URL=sandbox_url, **env_vars)
    return run_report(script, env, timeout)


def ok(report: dict, *steps: str) -> None:
    """The named SDK steps of a report ran without throwing."""
    failed = {s: report["errors"][s] for s in steps if s in report["errors"]}
    assert not failed, f"JS SDK calls failed: {failed}"
