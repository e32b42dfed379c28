"""Fixtures shared by the SDK suites: the SDKs pointed at the test daemon in debug mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def debug_env(daemon) -> Iterator[str]:
    """The SDK reads E2B_DEBUG / E2B_SANDBOX_URL when the sandbox object is built (sdk-expectations §1.1, §2.1)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2B_DEBUG", "true")
        mp.setenv("E2B_SANDBOX_URL", daemon.url)
        for var in ("E2B_API_KEY", "E2B_API_URL", "E2B_ACCESS_TOKEN", "E2B_DOMAIN"):
            mp.delenv(var, raising=False)
        yield daemon.url
