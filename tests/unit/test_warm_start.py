"""The warm task start: which processes warm up, and that a task forked from a warmed process inherits the
imports and computes exactly what a process without them computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mlplatform.warm_start import forks_tasks, install
from tests.conftest import REPO


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/airflow", "scheduler"], True),
    (["airflow", "celery", "worker", "-q", "default"], True),
    (["airflow", "dag-processor"], False),
    (["airflow", "api-server"], False),
    (["airflow", "triggerer"], False),
    (["airflow", "celery", "flower"], False),
    (["/venv/bin/pytest", "tests"], False),
    ([], False),
])
def test_only_the_processes_that_fork_tasks_warm_up(argv, expected):
    assert forks_tasks(argv) is expected


def test_warm_start_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("MLOPS_WARM_START", "false")
    assert install(["airflow", "scheduler"]) is False


# Runs as `airflow scheduler` would: Airflow imports airflow_local_settings (include/ is on the path), the first
# fork warms the parent up, and the forked "task" fits a model with two OpenMP threads. The parent fits the same
# model afterwards; both predictions are printed for comparison.
_FORKED_TASK = textwrap.dedent('''
    import json, os, sys
    sys.argv = [os.path.join(os.path.dirname(sys.executable), "airflow"), "scheduler"]
    import airflow  # noqa: F401  (imports airflow_local_settings)
    from tests.unit.test_training import CFG, _lake_with_history
    from mlplatform.features import build_features
    from mlplatform.training import assemble_training_set, fit, time_split
    import tempfile, pathlib

    def predictions():
        with tempfile.TemporaryDirectory() as tmp:
            frame = assemble_training_set(_lake_with_history(pathlib.Path(tmp)), CFG, "2013-01-12").frame
        train, holdout = time_split(frame, "SCHED_DEPARTURE", 3)
        return fit(train, CFG).predict_proba(build_features(holdout, CFG))[:, 1].round(12).tolist()

    heavy = ("mlflow", "sklearn.ensemble", "evidently", "snowflake.connector", "skops.io")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        inherited = [m for m in heavy if m in sys.modules]  # before the task imports anything
        os.write(write, json.dumps({"inherited": inherited, "p": predictions()}).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 20):
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    child = json.loads(b"".join(chunks))
    print(json.dumps({"status": status, "child": child, "parent_p": predictions()}))
''')


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "OMP_NUM_THREADS": "2", **env,
               "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)])}
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=300,
                          cwd=REPO)


def test_a_task_forked_from_a_warm_scheduler_inherits_the_imports_and_computes_the_same():
    result = _run(_FORKED_TASK)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"] == 0
    assert out["child"]["inherited"] == ["mlflow", "sklearn.ensemble", "evidently", "snowflake.connector", "skops.io"]
    assert out["child"]["p"] == out["parent_p"] and len(out["parent_p"]) > 10
    assert "Exception ignored" not in result.stderr  # every library's fork hooks ran in pairs
    assert "warm start: imported" in result.stdout + result.stderr


def test_a_process_that_parses_dags_imports_nothing_heavy():
    code = ("import sys, os; sys.argv = ['airflow', 'dag-processor']; import airflow; "
            "pid = os.fork()\n"
            "if pid == 0: os._exit(0)\n"
            "os.waitpid(pid, 0); print(sorted(m for m in ('mlflow', 'sklearn', 'evidently') if m in sys.modules))")
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_after_the_warm_up_a_job_heartbeats_from_when_it_starts_executing(monkeypatch):
    """The scheduler's Job is built before the warm-up (at its first fork) and starts executing after it; its
    first heartbeat must not be as old as the imports took."""
    from datetime import timedelta

    from airflow.jobs.job import Job
    from airflow.sdk import timezone

    from mlplatform.warm_start import heartbeat_from_execution_start

    class Session:
        def add(self, _):
            pass

        def commit(self):
            pass

    monkeypatch.setattr(Job, "prepare_for_execution", Job.prepare_for_execution)  # restored afterwards
    heartbeat_from_execution_start()
    heartbeat_from_execution_start()  # once only, whatever calls it
    job = Job()
    job.latest_heartbeat = timezone.utcnow() - timedelta(seconds=50)  # built before a 50 s warm-up
    job.prepare_for_execution(session=Session())
    assert (timezone.utcnow() - job.latest_heartbeat).total_seconds() < 5
    assert job.state == "running"
