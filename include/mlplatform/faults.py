"""Named pause points, so a fault-injection test can stop a process at a known step and kill it there.

Code marks a step with ``pause_point("lake.before_manifest")``. When the environment variable
``MLOPS_PAUSE_AT`` names that point (several may be given, comma-separated), the process stops there:
it writes its pid to the file named by ``MLOPS_PAUSE_FLAG`` (when set), logs that it is paused, and
sleeps ``MLOPS_PAUSE_SECONDS`` (default 600) before going on. A test waits for the flag file, then
sends SIGKILL to that pid, or lets it resume. Unset, a pause point costs one environment lookup.
"""

from __future__ import annotations

import logging
import os
import time

PAUSE_AT, PAUSE_FLAG, PAUSE_SECONDS = "MLOPS_PAUSE_AT", "MLOPS_PAUSE_FLAG", "MLOPS_PAUSE_SECONDS"

log = logging.getLogger(__name__)


def pause_point(name: str) -> None:
    """Hold here if ``MLOPS_PAUSE_AT`` names this point; otherwise return at once."""
    requested = os.environ.get(PAUSE_AT)
    if not requested or name not in {p.strip() for p in requested.split(",")}:
        return
    flag = os.environ.get(PAUSE_FLAG)
    if flag:
        partial = f"{flag}.{os.getpid()}.part"
        with open(partial, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(partial, flag)  # the flag appears complete: a reader never sees an empty pid
    seconds = float(os.environ.get(PAUSE_SECONDS, "600"))
    log.warning("pid %d paused at %s for %.0f s (%s)", os.getpid(), name, seconds, PAUSE_AT)
    time.sleep(seconds)
