"""Named pause points, for fault-injection tests.

Code marks a moment worth interrupting with ``pause_point("training.registered")``. Normally that does
nothing. When the environment variable ``MLOPS_PAUSE_AT`` names the point (a comma-separated list of
names), the process announces ``MLOPS_PAUSED_AT <name> pid=<pid>`` on stderr and sleeps there for as long
as the variable still names it. A test starts a task in a subprocess with the variable set, waits for the
announcement, and then kills the process at that exact moment (``kill -9``) or, in-process, releases it by
changing ``os.environ``. No test depends on timing.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_AT = "MLOPS_PAUSE_AT"
ANNOUNCEMENT = "MLOPS_PAUSED_AT"


def _held(name: str) -> bool:
    return name in {n.strip() for n in os.environ.get(PAUSE_AT, "").split(",")}


def pause_point(name: str, poll_seconds: float = 0.2) -> None:
    """Sleep here while ``MLOPS_PAUSE_AT`` names this point; return at once otherwise."""
    if not _held(name):
        return
    sys.stderr.write(f"{ANNOUNCEMENT} {name} pid={os.getpid()}\n")
    sys.stderr.flush()
    while _held(name):
        time.sleep(poll_seconds)
