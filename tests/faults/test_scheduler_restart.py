"""The scheduler is killed (kill -9) in the middle of a backfill, while one of its tasks is committing a
partition. Its supervisor ends what it had started (executor workers, log server, the task) and restarts it,
as `restart: unless-stopped` would; the new scheduler resets the orphaned task and finishes the backfill:
every day committed once, with the bytes of an uninterrupted ingest, nothing lost, no run or row duplicated.

A real api-server (the tasks' Execution API), dag-processor and scheduler with the LocalExecutor, on the
session's metadata DB. Only the model's ingest DAG is unpaused. The restarted scheduler looks for a dead
scheduler's tasks every 5 s instead of every 5 minutes (it takes a scheduler for dead 30 s after its last
heartbeat, as configured by default). Runs and tries are read from the metadata DB."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.faults.harness import (FAULT_MODEL, data_file_hashes, feature_accounting, label_accounting, record,
                                  stray_files)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
DAYS = ["2013-03-09", "2013-03-10"]
DAGS = [f"{FAULT_MODEL}__{stage}" for stage in ("ingest", "score", "monitor", "train", "rollback")]


@pytest.fixture
def airflow(champion, local_servers, tmp_path):
    """api-server and dag-processor up, the model's DAGs parsed, only its ingest DAG unpaused, then the
    scheduler; tasks that reach lake.before_manifest hold there, the first one only. Yields (api, env, flag)."""
    from mlplatform.devstack.airflow_api import AirflowApi
    from mlplatform.devstack.stack import components, start, stop

    flag, passwords = tmp_path / "held", tmp_path / "passwords.json"
    env = {**local_servers, "MLOPS_MODELS_DIR": os.environ["MLOPS_MODELS_DIR"],
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
           "MLOPS_PAUSE_AT": "lake.before_manifest", "MLOPS_PAUSE_FLAG": str(flag)}
    by_name = {c.name: c for c in components(env)}
    started = []
    try:
        for name in ("airflow-api-server", "airflow-dag-processor"):
            start(by_name[name], env)
            started.append(by_name[name])
        api = AirflowApi(env["MLOPS_AIRFLOW_URL"], "admin", admin_password(passwords))
        api.wait_for_dags(DAGS, timeout=600)
        for dag_id in DAGS:
            resp = api.session.patch(f"{api.base_url}/api/v2/dags/{dag_id}",
                                     json={"is_paused": not dag_id.endswith("__ingest")}, timeout=60)
            resp.raise_for_status()
        start(by_name["airflow-scheduler"], env)
        started.append(by_name["airflow-scheduler"])
        yield api, env, flag
    finally:
        for component in started:  # SIGTERM first: on SIGINT the scheduler waits 20 s for running tasks
            os.killpg(int(component.pidfile(Path(env["MLOPS_DATA_DIR"])).read_text()), signal.SIGTERM)
        for component in started:
            stop(component, env)


def admin_password(passwords, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while not passwords.exists():
        assert time.monotonic() < deadline, f"the api-server wrote no password file at {passwords}"
        time.sleep(0.5)
    return json.loads(passwords.read_text())["admin"]


def scheduler_process(env) -> psutil.Process:
    """The `airflow scheduler` process under its supervisor (which may also hold orphans it has yet to end)."""
    supervisor = psutil.Process(int((Path(env["MLOPS_DATA_DIR"]) / "run" / "airflow-scheduler.pid").read_text()))

    def schedulers():
        return [c for c in supervisor.children() if c.status() != psutil.STATUS_ZOMBIE
                and " ".join(c.cmdline()).split(" -- ")[0].endswith("scheduler")]

    (scheduler,) = wait_for("the supervisor's scheduler", schedulers, timeout=120, every=0.5)
    return scheduler


def wait_for(what, predicate, timeout: float = 600, every: float = 1):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(every)
    return value


def from_db(query):
    """``query(session)`` against the metadata DB, or None while SQLite is locked by the running components."""
    from sqlalchemy.exc import OperationalError

    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            return query(session)
    except OperationalError:
        return None


def backfill_runs(dag_id: str) -> list[tuple[str, str, str]] | None:
    """(day, state, run_id) of the DAG's backfill runs."""
    from airflow.models import DagRun

    return from_db(lambda s: sorted((r.logical_date.date().isoformat(), r.state, r.run_id) for r in
                                    s.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_type == "backfill")))


def tries(dag_id: str, run_ids: set[str]) -> dict[tuple[str, str], int] | None:
    from airflow.models import TaskInstance

    return from_db(lambda s: {(ti.run_id, ti.task_id): ti.try_number for ti in
                              s.query(TaskInstance).filter(TaskInstance.dag_id == dag_id) if ti.run_id in run_ids})


def test_scheduler_killed_mid_backfill(airflow, reference, warehouse):
    from mlplatform.lake import default_lake

    api, env, flag = airflow
    ingest = f"{FAULT_MODEL}__ingest"
    expected = {ds: reference.ingest(ds) for ds in DAYS}
    api.backfill(ingest, DAYS[0], DAYS[-1], max_active_runs=1)

    wait_for("a task holding at lake.before_manifest", flag.exists, every=0.2)
    held_task = int(flag.read_text())
    killed = scheduler_process(env)
    left_behind = killed.children(recursive=True)  # its LocalExecutor workers, log server, the held task
    assert held_task in {p.pid for p in left_behind}
    killed.kill()  # kill -9 of the scheduler; its supervisor then ends what it had started, the held task too
    restarted = wait_for("a restarted scheduler", lambda: (s := scheduler_process(env)).pid != killed.pid and s,
                         timeout=120)
    assert not [p for p in left_behind if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], \
        "the killed scheduler's processes outlived it"

    runs = wait_for("the backfill to finish", lambda: (rs := backfill_runs(ingest)) and
                    all(state in ("success", "failed") for _, state, _ in rs) and rs, timeout=900, every=3)

    lake = default_lake()
    assert [day for day, _, _ in runs] == DAYS, "one run per day, no more"
    assert {state for _, state, _ in runs} == {"success"}, runs
    tried = wait_for("the tries", lambda: tries(ingest, {run_id for _, _, run_id in runs}))
    first_day, later_days = runs[0][2], {run_id for _, _, run_id in runs[1:]}
    assert len(tried) == 2 * len(DAYS), tried
    assert max(n for (run_id, _), n in tried.items() if run_id == first_day) == 2, f"the killed task ran again: {tried}"
    assert {n for (run_id, _), n in tried.items() if run_id in later_days} == {1}, f"no other task ran twice: {tried}"
    assert restarted.is_running()
    for area in ("datasets", "labels"):
        assert stray_files(lake, area, FAULT_MODEL) == []
    rows_lost = duplicates = 0
    for ds in DAYS:
        for accounting in (feature_accounting, label_accounting):
            lost, dup = accounting(warehouse, lake, FAULT_MODEL, ds)
            rows_lost, duplicates = rows_lost + lost, duplicates + dup
    same = all(data_file_hashes(lake, area, FAULT_MODEL, ds) == files
               for ds in DAYS for area, files in expected[ds].items())
    record("scheduler-killed-mid-backfill", injected=not killed.is_running(), survived=same,
           rows_lost=rows_lost, duplicates=duplicates + len(runs) - len(set(day for day, _, _ in runs)))
