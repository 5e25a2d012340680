"""The supervisor restarts its command and ends whatever the command left behind first: here a command that
starts a long-lived child, then dies of kill -9 (as a scheduler whose LocalExecutor workers outlive it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import REPO

DIES_LEAVING_A_CHILD = ("import os, signal, subprocess, sys\n"
                        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                        "print(worker.pid, flush=True)\n"
                        "os.kill(os.getpid(), signal.SIGKILL)\n")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def next_pid(output) -> int:
    """The next pid the command printed, a line of digits (the supervisor's lines go to the same stream)."""
    while not (line := output.readline()).strip().isdigit():
        assert line, "the output ended"
    return int(line)


def wait_until(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.1)


def test_what_a_killed_command_started_is_ended_before_its_restart():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)])}
    supervisor = subprocess.Popen([sys.executable, "-m", "mlplatform.devstack.supervise", sys.executable, "-c",
                                   DIES_LEAVING_A_CHILD], env=env, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
    try:
        first = next_pid(supervisor.stdout)
        wait_until(lambda: gone(first))
        second = next_pid(supervisor.stdout)  # restarted; its own child then ended in turn
        assert second != first
        wait_until(lambda: gone(second))
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(30)
        supervisor.stdout.close()
