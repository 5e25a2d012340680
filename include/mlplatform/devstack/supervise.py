"""Run a command and restart it whenever it exits, like `restart: unless-stopped` in compose.

    python -m mlplatform.devstack.supervise airflow scheduler

On SQLite, an Airflow scheduler can exit on a write conflict with the api-server; a restart is
all it needs. SIGTERM/SIGINT stop the child and the supervisor.

Whatever the command started is ended when it exits, before the restart. The supervisor is the child
subreaper, so the command's orphans come to it rather than to init: a scheduler killed with -9 would
otherwise leave its LocalExecutor workers waiting for work forever, and its log server holding the port
the next scheduler needs.
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


def _become_subreaper() -> None:
    PR_SET_CHILD_SUBREAPER = 36
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _end_descendants(grace_s: float = 2) -> None:
    """SIGTERM to every process left below this one, then SIGKILL to those still there after ``grace_s``."""
    import psutil

    left = psutil.Process().children(recursive=True)
    for process in left:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


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
    _become_subreaper()
    while not stopping:
        child = subprocess.Popen(argv)
        child_group = _own_group(child)
        code = child.wait()
        if child_group is not None:
            _kill_group(child_group)
        _end_descendants()
        if stopping:
            break
        print(f"[supervise] {' '.join(argv)} exited with {code}; restarting in {RESTART_DELAY_S}s", flush=True)
        time.sleep(RESTART_DELAY_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
