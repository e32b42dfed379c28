"""`e2b-code-interpreter` in normal mode against `envd platform`: the code-interpreter template's VM serves
port 49999, reached through the routing proxy by the SDK's E2b-Sandbox-Port header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform.conftest import IMAGES, Platform, running_platform

pytestmark = pytest.mark.sdk


@pytest.fixture(scope="module")
def ci_platform() -> Iterator[Platform]:
    image = Path(IMAGES or ".") / "code-interpreter" / "rootfs.ext4"
    if not image.is_file():
        reason = f"code-interpreter image flavour not built ({image} missing: make rootfs FLAVOUR=code-interpreter)"
        print(f"skipping: {reason}")
        pytest.skip(reason)
    with running_platform("code-interpreter") as plat:
        health = plat.health()
        if health["templates"].get("code-interpreter") != "ready":
            pytest.fail(f"template code-interpreter not ready: {health}\n{plat.log_tail()}")
        yield plat


def test_run_code(ci_platform):
    from e2b_code_interpreter import Sandbox

    sandbox = Sandbox.create(timeout=120)  # the SDK's default template, code-interpreter-v1 (an alias here)
    try:
        assert sandbox.get_info().template_id == "code-interpreter"
        execution = sandbox.run_code("x = 6 * 7\nprint('out', x)\nx")
        assert execution.error is None
        assert execution.text == "42"
        assert execution.logs.stdout == ["out 42\n"]
        assert sandbox.run_code("x + 1").text == "43"  # kernel state persists between calls
        failed = sandbox.run_code("1 / 0")
        assert failed.error is not None and failed.error.name == "ZeroDivisionError"
        assert sandbox.commands.run("echo shell").stdout == "shell\n"
    finally:
        sandbox.kill()


def test_unknown_template_names_the_known_ones(ci_platform):
    from e2b import Sandbox
    from e2b.exceptions import SandboxException

    with pytest.raises(SandboxException, match=r"template 'nope' not found \(this platform has: code-interpreter\)"):
        Sandbox.create("nope")
