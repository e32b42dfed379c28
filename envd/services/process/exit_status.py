"""How a reaped child ended, in the words of Go's os.ProcessState (spec/envd.md §6.5 EndEvent)."""

from __future__ import annotations

import os
from dataclasses import dataclass

# §6.5: Go's signal names (Linux numbering); Python's strsignal words them differently.
SIGNAL_NAMES = {
    1: "hangup",
    2: "interrupt",
    3: "quit",
    4: "illegal instruction",
    5: "trace/breakpoint trap",
    6: "aborted",
    7: "bus error",
    8: "floating point exception",
    9: "killed",
    10: "user defined signal 1",
    11: "segmentation fault",
    12: "user defined signal 2",
    13: "broken pipe",
    14: "alarm clock",
    15: "terminated",
    16: "stack fault",
    17: "child exited",
    18: "continued",
    19: "stopped (signal)",
    20: "stopped",
    21: "stopped (tty input)",
    22: "stopped (tty output)",
    23: "urgent I/O condition",
    24: "CPU time limit exceeded",
    25: "file size limit exceeded",
    26: "virtual timer expired",
    27: "profiling timer expired",
    28: "window changed",
    29: "I/O possible",
    30: "power failure",
    31: "bad system call",
}


def signal_name(signum: int) -> str:
    return SIGNAL_NAMES.get(signum, f"signal {signum}")


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int  # -1 when killed by a signal
    exited: bool
    status: str
    error: str | None  # None only for a clean exit 0

    @classmethod
    def from_wait_status(cls, wait_status: int) -> ExitStatus:
        if os.WIFEXITED(wait_status):
            code = os.WEXITSTATUS(wait_status)
            status = f"exit status {code}"
            return cls(exit_code=code, exited=True, status=status, error=None if code == 0 else status)
        if os.WIFSIGNALED(wait_status):
            status = "signal: " + signal_name(os.WTERMSIG(wait_status))
            if os.WCOREDUMP(wait_status):
                status += " (core dumped)"
            return cls(exit_code=-1, exited=False, status=status, error=status)
        # Stopped/continued are never reported: waitpid is called without WUNTRACED/WCONTINUED.
        status = f"wait status {wait_status}"
        return cls(exit_code=-1, exited=False, status=status, error=status)
