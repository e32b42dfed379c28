"""Kernels never outlive the daemon, even a SIGKILLed one.

ipykernel-based kernels (python, bash) poll their parent and exit with it, but Deno, IRkernel and JJava (two
JVMs) do not. So the daemon starts one tiny bash process that holds the read end of a pipe and the list of
kernel process groups (each kernel leads its own session); when the daemon dies, for whatever reason, the
pipe reaches EOF and the reaper SIGKILLs every group still listed. A clean shutdown has stopped the kernels
already and the reaper exits with an empty list.
"""

from __future__ import annotations

import logging
import subprocess

log = logging.getLogger("envd.code")

# "+pgid" adds a group, "-pgid" removes it (a stopped kernel's pgid may be reused by someone else).
_SCRIPT = r"""
declare -A live
while read -r line; do
  case $line in
    +*) live[${line:1}]=1 ;;
    -*) unset "live[${line:1}]" ;;
  esac
done
for pgid in "${!live[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null; done
exit 0
"""

_reaper: subprocess.Popen | None = None


def _send(line: str) -> None:
    global _reaper
    if _reaper is None or _reaper.poll() is not None:
        # The pipe's write end is not inheritable (PEP 446), so kernels never hold it open. Its own
        # session: a signal to the daemon's process group (Ctrl-C, a supervisor) leaves it to clean up.
        _reaper = subprocess.Popen(["bash", "-c", _SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    try:
        _reaper.stdin.write(f"{line}\n".encode())
        _reaper.stdin.flush()
    except OSError as err:
        log.warning("kernel reaper unavailable: %s", err)


def watch(pgid: int | None) -> None:
    if pgid:
        _send(f"+{pgid}")


def forget(pgid: int | None) -> None:
    if pgid and _reaper is not None:
        _send(f"-{pgid}")

