"""Checking processes from the test side, as the SDK test suites do (`kill -0`)."""

from __future__ import annotations

import os
import time


def alive(pid: int) -> bool:
    """`kill -0 pid`: true for a running process and for an unreaped zombie, false once it is reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
