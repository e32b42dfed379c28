"""The Node project in tests/e2e/js (the JS SDK pinned by its package-lock.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

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
