"""Run Python in a subprocess held at a named pause point (``mlplatform.faults``), to kill it there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import REPO


def start_paused(code: str, point: str) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter with this process's environment, and return once it is held at
    ``point``. Fails if the process ends without reaching it."""
    env = {**os.environ, "MLOPS_PAUSE_AT": point,
           "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # until the announcement, or the end of the process's stderr
        seen.append(line)
        if line.startswith(f"MLOPS_PAUSED_AT {point} "):
            return proc
    proc.wait()
    raise AssertionError(f"the process ended (exit {proc.returncode}) without reaching {point}:\n{''.join(seen[-40:])}")


def kill_hard(proc: subprocess.Popen) -> None:
    """kill -9: no exception handler, no context manager exit, no atexit hook runs."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
