"""Named pause points, so a fault-injection test can stop a process at a known step and kill it there.

Code marks a step with ``pause_point("lake.before_manifest")``; normally that costs one environment
lookup. When ``MLOPS_PAUSE_AT`` names the point (a comma-separated list of names), the process:

- announces ``MLOPS_PAUSED_AT <name> pid=<pid>`` on stderr;
- writes its pid to the file named by ``MLOPS_PAUSE_FLAG``, when set (written whole, then renamed, so a
  reader never sees an empty pid);
- holds there while the variable still names the point (an in-process test releases it by changing
  ``os.environ``), for at most ``MLOPS_PAUSE_SECONDS`` (default 600), then goes on.

A test starts a task in a subprocess with the variable set, waits for the announcement or the flag file,
then kills the process at that exact moment (``kill -9``) or lets it resume. No test depends on timing.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_AT, PAUSE_FLAG, PAUSE_SECONDS = "MLOPS_PAUSE_AT", "MLOPS_PAUSE_FLAG", "MLOPS_PAUSE_SECONDS"
ANNOUNCEMENT = "MLOPS_PAUSED_AT"


def _held(name: str) -> bool:
    return name in {n.strip() for n in os.environ.get(PAUSE_AT, "").split(",")}


def pause_point(name: str, poll_seconds: float = 0.2) -> None:
    """Hold here while ``MLOPS_PAUSE_AT`` names this point; return at once otherwise."""
    if not _held(name):
        return
    sys.stderr.write(f"{ANNOUNCEMENT} {name} pid={os.getpid()}\n")
    sys.stderr.flush()
    flag = os.environ.get(PAUSE_FLAG)
    if flag:
        partial = f"{flag}.{os.getpid()}.part"
        with open(partial, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(partial, flag)
    deadline = time.monotonic() + float(os.environ.get(PAUSE_SECONDS, "600"))
    while _held(name) and time.monotonic() < deadline:
        time.sleep(poll_seconds)
