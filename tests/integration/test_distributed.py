"""The distributed profile, end to end: Airflow with the CeleryExecutor on the machine's PostgreSQL and Redis,
two Celery workers with their own directories, the lake and MLflow's artifacts on S3 (moto server), MLflow with
a PostgreSQL backend and basic-auth. Train, then ingest -> score -> monitor for several days through the real
scheduler and workers; then check where the work ran, where its hand-offs live, and MLflow's authentication.

Everything runs on free ports, in uniquely named databases and a unique Celery queue, so the test can run
beside the embedded stack or another run of itself; the databases are dropped afterwards."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
MODEL = "flight_delay"
# Enough labelled history for a first champion (7 holdout days plus training days), ingested directly;
# then the days that go through the scheduler and both Celery workers.
HISTORY = [f"2013-01-{d:02d}" for d in range(19, 32)]
DAYS = ["2013-02-01", "2013-02-02", "2013-02-03"]
STAGES = ("ingest", "score", "monitor", "train")


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from mlplatform.devstack.distributed import Profile, down, up

    for name, (host, port) in {"PostgreSQL": ("127.0.0.1", 5432), "Redis": ("127.0.0.1", 6379)}.items():
        if not _reachable(host, port):
            pytest.fail(f"{name} is not running on {host}:{port}; the distributed profile needs it")
    profile = Profile.ephemeral(tmp_path_factory.mktemp("distributed") / "data")
    try:
        started = time.monotonic()
        env = up(profile)
        timings = {"up_s": time.monotonic() - started}
        yield profile, env, timings
    finally:
        down(profile)


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory):
    from pathlib import Path

    from mlplatform.devstack.airflow_api import AirflowApi
    from mlplatform.devstack.distributed import run_pipeline, seed_history

    profile, env, timings = stack
    started = time.monotonic()
    seed_history(env, MODEL, HISTORY, tmp_path_factory.mktemp("seed"))
    timings["seed_history_s"] = time.monotonic() - started
    api = AirflowApi.local_admin(env["MLOPS_AIRFLOW_URL"], Path(env["AIRFLOW_HOME"]))
    # Search budget 0: the configured model alone; the search itself is covered by the embedded pipeline test.
    timings.update(run_pipeline(api, MODEL, DAYS, search_budget=0, timeout=1200))
    print(f"\n[distributed] {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    return api


def task_instances(api) -> list[dict]:
    out, offset = [], 0
    while True:
        page = api.get("/dags/~/dagRuns/~/taskInstances", limit=100, offset=offset)
        out += page["task_instances"]
        offset += 100
        if offset >= page["total_entries"]:
            return out


def failed_task_logs(api) -> str:
    """The last lines of every failed task's log, read back from S3 through the API server."""
    out = []
    for ti in task_instances(api):
        if ti["state"] != "failed":
            continue
        resp = api.session.get(f"{api.base_url}/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                               f"{ti['task_id']}/logs/{ti['try_number']}", params={"full_content": "true"},
                               headers={"Accept": "application/json"}, timeout=60)
        content = resp.json().get("content", []) if resp.ok else [resp.text]
        lines = []
        for c in content:
            lines.append(c.get("event", str(c)) if isinstance(c, dict) else str(c))
            for error in (c.get("error_detail") or []) if isinstance(c, dict) else []:  # the exception, if any
                lines += [f"  {f.get('filename')}:{f.get('lineno')} {f.get('name')}" for f in error.get("frames", [])[-6:]]
                lines.append(f"  {error.get('exc_type')}: {error.get('exc_value')}")
        out.append(f"--- {ti['dag_id']}.{ti['task_id']} {ti['dag_run_id']} try {ti['try_number']} on {ti['hostname']}\n"
                   + "\n".join(lines[-40:]))
    return "\n".join(out)


def test_every_run_succeeded(pipeline):
    states = {stage: [(r["dag_run_id"], r["state"]) for r in pipeline.runs(f"{MODEL}__{stage}")] for stage in STAGES}
    if any(state != "success" for runs in states.values() for _, state in runs):
        pytest.fail(f"{states}\n{failed_task_logs(pipeline)}")
    assert all(states.values()), states


def test_every_day_went_through_ingest_score_and_monitor(pipeline, stack):
    from mlplatform.devstack.distributed import s3_client

    profile, _, _ = stack
    s3 = s3_client(profile)
    for ds in DAYS:
        for area in ("datasets", "predictions", "reports"):
            prefix = f"lake/{area}/{MODEL}/ds={ds}/"
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=profile.lake_bucket, Prefix=prefix).get("Contents", [])]
            assert any(k.endswith(("_manifest.json", "summary.json")) for k in keys), (prefix, keys)


def test_tasks_ran_on_both_workers(pipeline, stack):
    profile, _, _ = stack
    tis = [ti for ti in task_instances(pipeline) if ti["state"] == "success"]  # a skipped branch never runs
    hosts = {ti["hostname"] for ti in tis}
    assert hosts == set(profile.workers), hosts
    per_worker = {w: sum(ti["hostname"] == w for ti in tis) for w in profile.workers}
    assert min(per_worker.values()) >= 2, per_worker


def test_no_task_read_another_workers_local_disk(pipeline, stack):
    """Every file a worker (its Celery pool and every task it forked) opened under the profile's data directory
    or the system temp directory was in its own directory; nothing one wrote to shared temp, another opened."""
    from mlplatform.devstack.distributed import disk_audit

    profile, _, _ = stack
    audit = disk_audit(profile)
    for worker, records in audit.items():
        assert any(r["own"] for r in records), f"{worker}: the audit saw nothing; was the hook installed?"
        foreign = [r for r in records if not r["own"] and r["path"].startswith(str(profile.data_dir) + os.sep)]
        assert not foreign, (worker, foreign[:5])
    for worker, records in audit.items():
        written_elsewhere = {r["path"] for other, rs in audit.items() if other != worker for r in rs
                             if r["write"] and not r["own"]}
        shared = [r["path"] for r in records if not r["own"] and r["path"] in written_elsewhere]
        assert not shared, (worker, shared[:5])
    # The tasks did work in their own temp directories (e.g. MLflow model downloads), not in a shared one.
    temp_dirs = tuple(str(profile.worker_dir(w) / "tmp") + os.sep for w in profile.workers)
    assert any(r["path"].startswith(temp_dirs) for rs in audit.values() for r in rs)


def test_hand_offs_live_in_s3_not_on_worker_disks(pipeline, stack):
    from mlplatform.devstack.distributed import s3_client

    profile, _, _ = stack
    s3 = s3_client(profile)

    def keys(bucket: str, prefix: str = "") -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    lake = keys(profile.lake_bucket)
    for area in ("datasets", "labels", "predictions", "reports", "reference", "training_sets", "promotions"):
        assert any(k.startswith(f"lake/{area}/") for k in lake), area
    assert any(k.endswith("/evidently_drift_run.json") for k in lake), "make reports-ui builds its workspace from these"
    artifacts = keys(profile.mlflow_bucket, "mlflow/")
    assert any(k.endswith("MLmodel") for k in artifacts), "the model is stored in S3 through the MLflow server"
    assert any("/airflow/" in f"/{k}" for k in keys(profile.logs_bucket)), "task logs are shipped to S3"
    # Nothing of the lake's is on a worker's disk, and no model download outlives the task that loaded it.
    for worker in profile.workers:
        left = [p for p in profile.worker_dir(worker).rglob("*") if p.is_file()
                and (p.suffix == ".parquet" or p.name in ("_manifest.json", "drift_report.html", "summary.json",
                                                          "MLmodel", "model.skops"))]
        assert not left, (worker, left[:5])


def test_mlflow_rejects_anonymous_writes(stack):
    _, env, _ = stack
    base = env["MLFLOW_TRACKING_URI"]
    resp = requests.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "anonymous"}, timeout=30)
    assert resp.status_code == 401
    assert requests.get(f"{base}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30).status_code == 401
    wrong = (env["MLFLOW_TRACKING_USERNAME"], "not-the-password")
    assert requests.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "wrong"}, auth=wrong,
                         timeout=30).status_code == 401


def test_pipeline_credentials_work_and_are_not_admin(pipeline, stack):
    from mlplatform.devstack.distributed import ADMIN_USER, admin_password

    profile, env, _ = stack
    base, creds = env["MLFLOW_TRACKING_URI"], (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    created = requests.post(f"{base}/api/2.0/mlflow/experiments/create", json={"name": "pipeline-can-write"},
                            auth=creds, timeout=30)
    assert created.status_code == 200, created.text
    model = requests.get(f"{base}/api/2.0/mlflow/registered-models/get", params={"name": MODEL}, auth=creds, timeout=30)
    assert model.status_code == 200 and model.json()["registered_model"]["aliases"], "the pipeline registered the model"
    refused = requests.post(f"{base}/api/2.0/mlflow/users/create", json={"username": "x", "password": "y" * 16},
                            auth=creds, timeout=30)
    assert refused.status_code == 403, "the pipeline's user is not an admin"
    user = requests.get(f"{base}/api/2.0/mlflow/users/get", params={"username": creds[0]},
                        auth=(ADMIN_USER, admin_password(profile)), timeout=30)
    assert user.status_code == 200 and user.json()["user"]["is_admin"] is False


def test_default_admin_password_is_not_in_place(stack):
    from mlplatform.devstack.distributed import ADMIN_USER, LEGACY_DEFAULT_ADMIN_PASSWORD, admin_password

    profile, env, _ = stack
    base = env["MLFLOW_TRACKING_URI"]
    assert admin_password(profile) != LEGACY_DEFAULT_ADMIN_PASSWORD
    url = f"{base}/api/2.0/mlflow/users/get"
    assert requests.get(url, params={"username": ADMIN_USER}, auth=(ADMIN_USER, LEGACY_DEFAULT_ADMIN_PASSWORD),
                        timeout=30).status_code == 401
    admin = requests.get(url, params={"username": ADMIN_USER}, auth=(ADMIN_USER, admin_password(profile)), timeout=30)
    assert admin.status_code == 200 and admin.json()["user"]["is_admin"] is True
    # The admin password reaches only the MLflow server: no Airflow component or task sees it.
    assert admin_password(profile) not in json.dumps(env)


def test_services_connect_to_postgres_as_their_own_roles(pipeline, stack):
    """Airflow's components and tasks and the MLflow server hold connections to their own databases, each as its
    service's role; none as the administrator (MLOPS_POSTGRES_URL's user), which only created them."""
    import psycopg

    profile, _, _ = stack
    with psycopg.connect(f"{profile.postgres_url}/postgres", autocommit=True) as conn:
        sessions = conn.execute("SELECT DISTINCT datname, usename FROM pg_stat_activity WHERE datname = ANY(%s)",
                                [list(profile.databases.values())]).fetchall()
        superusers = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper")}
    by_database = {}
    for database, user in sessions:
        by_database.setdefault(database, set()).add(user)
    assert by_database[profile.databases["airflow"]] == {profile.roles["airflow"]}, by_database
    assert by_database[profile.databases["mlflow"]] == {profile.roles["mlflow"]}, by_database
    assert not superusers & set(profile.roles.values())
