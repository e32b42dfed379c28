"""The Node project in tests/e2e/js (the JS SDK pinned by its package-lock.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"


def node_tools() -> tuple[str, str] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


def ensure_node_modules(npm: str) -> None:
    if (JS_DIR / "node_modules" / "e2b" / "package.json").exists():
        return
    # `npm ci` installs exactly the committed package-lock.json.
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_report(script: str, env: dict[str, str], timeout: float = 180) -> dict:
    """Run one of the Node scripts (node_modules installed on demand) and return the JSON report it prints
    last; skips, saying so, where node/npm are missing."""
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


def ok(report: dict, *steps: str) -> None:
    """The report's steps ran without an error."""
    failed = {s: report["errors"][s] for s in steps if s in report["errors"]}
    assert not failed, f"JS SDK calls failed: {failed}"
