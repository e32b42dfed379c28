"""envd's own OOM protection (spec/envd.md §1.1, §8.10).

Upstream's init unit sets oom_score_adj -1000; envd sets it itself so that a run without that unit is
protected too. Children inherit the value: the process spawner must raise it again (§6.3 wrapper: 100).
"""

from __future__ import annotations

import logging

log = logging.getLogger("envd")

DAEMON_OOM_SCORE_ADJ = -1000


def protect_daemon(path: str = "/proc/self/oom_score_adj") -> bool:
    """Make the OOM killer pass over envd; without CAP_SYS_RESOURCE (not root, or a container that drops
    it) log once and carry on."""
    try:
        with open(path, "w") as f:
            f.write(str(DAEMON_OOM_SCORE_ADJ))
    except OSError as err:
        log.warning("cannot set oom_score_adj %d (needs CAP_SYS_RESOURCE): %s", DAEMON_OOM_SCORE_ADJ, err)
        return False
    return True
