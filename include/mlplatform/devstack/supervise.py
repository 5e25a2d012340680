"""Run a command and restart it whenever it exits, like `restart: unless-stopped` in compose.

    python -m mlplatform.devstack.supervise airflow scheduler

On SQLite, an Airflow scheduler can exit on a write conflict with the api-server; a restart is
all it needs. SIGTERM/SIGINT stop the child and the supervisor.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

RESTART_DELAY_S = 3


def main(argv: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        child = subprocess.Popen(argv)
        code = child.wait()
        if stopping:
            break
        print(f"[supervise] {' '.join(argv)} exited with {code}; restarting in {RESTART_DELAY_S}s", flush=True)
        time.sleep(RESTART_DELAY_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
