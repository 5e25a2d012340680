"""Run a command and restart it whenever it exits, like `restart: unless-stopped` in compose.

    python -m mlplatform.devstack.supervise airflow scheduler

On SQLite, an Airflow scheduler can exit on a write conflict with the api-server; a restart is
all it needs. SIGTERM/SIGINT stop the child and the supervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

RESTART_DELAY_S = 3


def _own_group(child: subprocess.Popen) -> int | None:
    """The child's process group when it made one of its own (the scheduler does), else None."""
    try:
        group = os.getpgid(child.pid)
    except ProcessLookupError:
        return None
    return group if group != os.getpgrp() else None


def _signal_own_group(child: subprocess.Popen, signum: int) -> None:
    group = _own_group(child)
    if group is not None:
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            pass


def _kill_group(group: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def main(argv: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signum)
            _signal_own_group(child, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        child = subprocess.Popen(argv)
        child_group = _own_group(child)
        code = child.wait()
        if child_group is not None:
            _kill_group(child_group)  # e.g. the scheduler's LocalExecutor workers, which outlive it otherwise
        if stopping:
            break
        print(f"[supervise] {' '.join(argv)} exited with {code}; restarting in {RESTART_DELAY_S}s", flush=True)
        time.sleep(RESTART_DELAY_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
