"""A server stops while the work runs: the S3 lake mid-ingest, MLflow during a registration, the warehouse.

The DAGs run through ``dag.test`` with their real retry policy, only with a 1 s base delay (exponential
backoff as configured), so a try that fails is retried, then the task fails loudly with exactly one alert.
Of the ingest DAG, only ``ingest_features`` runs (``ingest_labels`` is marked done without running), so
each outage shows one task's tries and its one alert.
Once the server is back, a re-run commits the same bytes as an uninterrupted run, and nothing is lost or
duplicated.

The S3 server (moto, which keeps its objects in memory only) is stopped with SIGSTOP and resumed with
SIGCONT: to its clients it is a server that no longer answers (requests time out; the S3 client's timeouts
are set to 1 s here), and its objects survive, as a real object store's do through an outage. Requests the
clients gave up on are served when it resumes, as after a network partition. MLflow and the warehouse keep
their state on disk, so they are really stopped and started again."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import REPO
from tests.faults.conftest import CUTOFF
from tests.faults.harness import (FAULT_MODEL, HeldProcess, component, data_file_hashes, feature_accounting,
                                  held_flag_waiter, record, server_pid, stray_files,
                                  training_rows_lost, versions_per_key)

pytestmark = pytest.mark.integration
S3_DAY, WAREHOUSE_DAY = "2013-03-07", "2013-03-08"
TASK = "ingest_features"


def outbox() -> list[dict]:
    from mlplatform.config import settings

    path = settings().outbox_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ingest_dag(retry_delay_s: float = 1):
    """The model's ingest DAG as the DAG files build it, with the retry delay's base shortened."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(REPO / "dags")).dags[f"{FAULT_MODEL}__ingest"]
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=retry_delay_s)
    return dag


def run_day(dag, ds: str):
    """A run of the day in which only TASK runs; (the run, TASK's task instance)."""
    run = dag.test(logical_date=datetime.fromisoformat(ds).replace(tzinfo=timezone.utc),
                   mark_success_pattern="ingest_labels")
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == TASK]
    return run, ti


def retry_gaps(ti) -> list[float]:
    """Seconds between the end of each try and the start of the next."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    with create_session() as session:
        tries = session.query(TaskInstanceHistory).filter_by(dag_id=ti.dag_id, run_id=ti.run_id,
                                                             task_id=ti.task_id).all()
        ends = {t.try_number: t.end_date for t in tries}
        starts = {t.try_number: t.start_date for t in tries} | {ti.try_number: ti.start_date}
    return [(starts[n + 1] - ends[n]).total_seconds() for n in sorted(ends)]


def assert_failed_loudly(ti, alerts: list[dict]) -> None:
    """The task tried three times, with growing delays, then failed; one alert, sent after its last try."""
    assert (ti.state, ti.try_number) == ("failed", 3)
    first, second = retry_gaps(ti)
    assert 1 <= first and 2 <= second, (first, second)
    (alert,) = alerts
    assert alert["kind"] == "task_failure" and f"{FAULT_MODEL}__ingest.{TASK} " in alert["text"]
    assert "try 3)" in alert["text"]


def committed_like(lake, ds: str, expected: dict) -> bool:
    return data_file_hashes(lake, "datasets", FAULT_MODEL, ds) == expected["datasets"]


# -- the S3 lake ---------------------------------------------------------------------------------------
@pytest.fixture
def s3_lake(s3_endpoint, monkeypatch):
    """The model's lake on the S3 server, with the S3 client's timeouts and retries short."""
    import fsspec.config
    import s3fs

    from mlplatform.lake import default_lake

    monkeypatch.setenv("MLOPS_LAKE_URI", s3_endpoint.replace("/lake", "/faults-lake"))
    monkeypatch.setitem(fsspec.config.conf, "s3", {"config_kwargs": {
        "connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}})
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    return default_lake()


def test_s3_stopped_mid_ingest(champion, reference, s3_lake, local_servers, warehouse, tmp_path):
    from mlplatform.faults import PAUSE_AT, PAUSE_FLAG

    expected = reference.ingest(S3_DAY, areas=("datasets",))
    s3 = server_pid(local_servers, "s3")
    stopped = []

    def stop_s3_and_release():  # the first task to reach the rename holds there meanwhile
        os.killpg(s3, signal.SIGSTOP)
        stopped.append(True)
        os.environ.pop(PAUSE_AT)

    dag, alerts_before = ingest_dag(), len(outbox())
    flag = tmp_path / "held"
    os.environ.update({PAUSE_AT: "lake.before_rename", PAUSE_FLAG: str(flag)})
    waiter = held_flag_waiter(flag, stop_s3_and_release)
    try:
        run, ti = run_day(dag, S3_DAY)
    finally:
        os.environ.pop(PAUSE_AT, None)
        os.environ.pop(PAUSE_FLAG)
        waiter.join()
        if stopped:
            os.killpg(s3, signal.SIGCONT)
    assert stopped, "the S3 server was never stopped"
    assert run.state == "failed"
    assert_failed_loudly(ti, outbox()[alerts_before:])
    assert s3_lake.partition("datasets", FAULT_MODEL, S3_DAY) is None, "a partial partition is visible"

    rerun, ti = run_day(dag, S3_DAY)

    assert rerun.state == "success" and ti.state == "success"
    assert stray_files(s3_lake, "datasets", FAULT_MODEL) == []
    rows_lost, duplicates = feature_accounting(warehouse, s3_lake, FAULT_MODEL, S3_DAY)
    record("s3-stopped-mid-ingest", injected=bool(stopped), survived=committed_like(s3_lake, S3_DAY, expected),
           rows_lost=rows_lost, duplicates=duplicates)


# -- MLflow -------------------------------------------------------------------------------------------
def test_mlflow_stopped_during_registration(champion, local_servers, tmp_path):
    """MLflow stops once the version is registered, while the try still has its run to end and the
    references, tags and alias to set: the try fails. Once MLflow is back, the retry (the same Airflow run)
    completes that same version and registers none."""
    from mlplatform import registry, training
    from mlplatform.config import settings
    from mlplatform.devstack.stack import start, stop

    run = f"{FAULT_MODEL}__train/mlflow-outage"
    key = training.idempotency_key(FAULT_MODEL, CUTOFF, champion["dataset_version"], run)
    first_try = HeldProcess(
        "from mlplatform import training\n"
        f"training.train_challenger({FAULT_MODEL!r}, {CUTOFF!r}, 'manual', search_budget=0, airflow_run={run!r})",
        "training.registered", tmp_path,
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}).wait_held()
    mlflow = component(local_servers, "mlflow")
    stop(mlflow, local_servers)
    try:
        first_try.release()
        exit_code = first_try.wait()
    finally:
        start(mlflow, local_servers)
    assert exit_code != 0, "the try went on as if MLflow were there"
    assert "ConnectionError" in first_try.output() or "Connection refused" in first_try.output()
    mlc = registry.client(settings().mlflow_tracking_uri)
    registered_run, registered = registry.registered_by_tag(mlc, FAULT_MODEL, training.IDEMPOTENCY_TAG, key)
    assert mlc.get_run(registered_run).info.status == "RUNNING", "the try died inside its run"
    assert "gate_promote" not in mlc.get_model_version(FAULT_MODEL, registered).tags, "and before the tags"

    outcome = training.train_challenger(FAULT_MODEL, CUTOFF, "manual", search_budget=0, airflow_run=run)

    assert (outcome["version"], outcome["run_id"]) == (registered, registered_run)
    assert registry.version_by_alias(mlc, FAULT_MODEL, registry.CHALLENGER).version == registered
    assert mlc.get_run(registered_run).info.status == "FAILED", "the dead try's run is ended"
    finished = mlc.get_model_version(FAULT_MODEL, registered).tags
    record("mlflow-stopped-during-registration", injected=exit_code != 0,
           survived=finished.get("gate_promote") is not None and outcome["holdout_auc"] == champion["holdout_auc"],
           rows_lost=training_rows_lost(mlc, champion["run_id"], outcome["run_id"]),
           duplicates=versions_per_key(mlc, FAULT_MODEL, key) - 1)


# -- the warehouse ----------------------------------------------------------------------------------------
def test_warehouse_down(champion, reference, local_servers, warehouse):
    """The warehouse is stopped before the day's ingest: the task retries, then fails with one alert that
    says the warehouse could not be reached; nothing is written. Once it is back, the re-run commits."""
    from mlplatform.devstack.stack import start, stop
    from mlplatform.lake import default_lake

    expected, lake = reference.ingest(WAREHOUSE_DAY, areas=("datasets",)), default_lake()
    dag, alerts_before = ingest_dag(), len(outbox())
    server = component(local_servers, "warehouse")
    stop(server, local_servers)
    try:
        run, ti = run_day(dag, WAREHOUSE_DAY)
    finally:
        start(server, local_servers)
        warehouse.close()  # its session ended with the server
    assert run.state == "failed"
    alerts = outbox()[alerts_before:]
    assert_failed_loudly(ti, alerts)
    assert "Could not connect to Snowflake backend" in alerts[0]["text"], alerts[0]["text"]
    assert WAREHOUSE_DAY not in lake.days("datasets", FAULT_MODEL)

    rerun, ti = run_day(dag, WAREHOUSE_DAY)

    assert rerun.state == "success" and ti.state == "success"
    rows_lost, duplicates = feature_accounting(warehouse, lake, FAULT_MODEL, WAREHOUSE_DAY)
    record("warehouse-down", injected=run.state == "failed", survived=committed_like(lake, WAREHOUSE_DAY, expected),
           rows_lost=rows_lost, duplicates=duplicates)
