"""Named pause points, so a fault-injection test can stop a process at a known step and kill it there.

Code marks a step with ``pause_point("lake.before_manifest")``; normally that costs one environment
lookup. When ``MLOPS_PAUSE_AT`` names the point (a comma-separated list of names), the process:

- announces ``MLOPS_PAUSED_AT <name> pid=<pid>`` on stderr;
- when ``MLOPS_PAUSE_FLAG`` names a file, creates it holding its pid (written whole, then linked into
  place, so a reader never sees an empty pid). The flag is the hold: one process at a time holds at the
  point, and a process that finds the flag already there goes on without holding (the flag of a process
  killed at the point stays, so the tries that follow it pass). Deleting the flag releases the holder;
- holds there while the variable still names the point (an in-process test releases it by changing
  ``os.environ``) and its flag, if any, is still there, for at most ``MLOPS_PAUSE_SECONDS`` (default
  600), then goes on.

A test starts a task in a subprocess (or a whole Airflow component) with the variables set, waits for the
announcement or the flag file, then kills the process at that exact moment (``kill -9``) or lets it
resume. No test depends on timing.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_AT, PAUSE_FLAG, PAUSE_SECONDS = "MLOPS_PAUSE_AT", "MLOPS_PAUSE_FLAG", "MLOPS_PAUSE_SECONDS"
ANNOUNCEMENT = "MLOPS_PAUSED_AT"


def _held(name: str) -> bool:
    return name in {n.strip() for n in os.environ.get(PAUSE_AT, "").split(",")}


def _claim(flag: str) -> bool:
    """Create ``flag`` holding this pid; False if it exists (another process holds, or held, the point)."""
    partial = f"{flag}.{os.getpid()}.part"
    with open(partial, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    try:
        os.link(partial, flag)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(partial)


def pause_point(name: str, poll_seconds: float = 0.2) -> None:
    """Hold here while ``MLOPS_PAUSE_AT`` names this point; return at once otherwise."""
    if not _held(name):
        return
    flag = os.environ.get(PAUSE_FLAG)
    if flag and not _claim(flag):
        return
    sys.stderr.write(f"{ANNOUNCEMENT} {name} pid={os.getpid()}\n")
    sys.stderr.flush()
    deadline = time.monotonic() + float(os.environ.get(PAUSE_SECONDS, "600"))
    while _held(name) and (not flag or os.path.exists(flag)) and time.monotonic() < deadline:
        time.sleep(poll_seconds)
