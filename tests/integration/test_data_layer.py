"""Contracts, quarantine and re-runs through real ingest DAG runs against the warehouse emulator."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
BAD_DAY = "2013-03-12"


def ingest_run(ds: str):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(REPO / "dags")).dags[f"{MODEL}__ingest"]
    run = dag.test(logical_date=datetime.fromisoformat(ds).replace(tzinfo=timezone.utc))
    (ti,) = [t for t in run.get_task_instances() if t.task_id == "ingest_features"]
    return run, ti


def outbox() -> list[dict]:
    from mlplatform.config import settings

    path = settings().outbox_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_breach_quarantines_alerts_once_and_a_fixed_rerun_flows(local_servers, warehouse):
    from mlplatform.lake import default_lake as lake

    warehouse.execute("UPDATE FLIGHTS.RAW.FLIGHT_SCHEDULE SET DISTANCE = -DISTANCE "
                      "WHERE FLIGHT_DATE = %(ds)s AND CARRIER = 'UA'", {"ds": BAD_DAY})
    alerts_before = len(outbox())
    run, ti = ingest_run(BAD_DAY)
    assert run.state == "failed" and ti.state == "failed"
    assert ti.try_number == 1, "a contract breach must not be retried"

    assert lake().partition("datasets", MODEL, BAD_DAY) is None, "no partial partition may be visible"
    reason = lake().read_json(f"quarantine/{MODEL}.features/{BAD_DAY}/reason.json")
    assert (reason["column"], reason["rule"]) == ("DISTANCE", "min")
    assert reason["source"]["query_id"]
    assert lake().exists(f"quarantine/{MODEL}.features/{BAD_DAY}/batch.parquet"), "the bad batch is kept"

    new_alerts = outbox()[alerts_before:]
    assert len(new_alerts) == 1 and new_alerts[0]["kind"] == "contract_breach"
    assert "DISTANCE" in new_alerts[0]["text"] and "'min'" in new_alerts[0]["text"]

    warehouse.execute("UPDATE FLIGHTS.RAW.FLIGHT_SCHEDULE SET DISTANCE = -DISTANCE "
                      "WHERE FLIGHT_DATE = %(ds)s AND DISTANCE < 0", {"ds": BAD_DAY})
    run, _ = ingest_run(BAD_DAY)
    assert run.state == "success"
    assert lake().partition("datasets", MODEL, BAD_DAY).row_count > 500


def test_missing_warehouse_table_is_a_clear_error(local_servers):
    from mlplatform import ingest
    from mlplatform.lake import default_lake
    from mlplatform.config import model_config
    from mlplatform.warehouse import WarehouseTableMissing

    contract = model_config(MODEL).source.contract
    start, end = ingest.day_interval("2013-03-13")
    with pytest.raises(WarehouseTableMissing, match="NO_SUCH_TABLE"):
        ingest.extract("datasets", MODEL, "2013-03-13", "FLIGHTS.RAW.NO_SUCH_TABLE", contract, start, end)
    reason = default_lake().read_json(f"quarantine/{MODEL}.features/2013-03-13/reason.json")
    assert reason["rule"] == "table_exists"
    assert default_lake().partition("datasets", MODEL, "2013-03-13") is None


def test_rerun_of_a_day_is_byte_identical(local_servers):
    from mlplatform import ingest
    from mlplatform.lake import default_lake

    first = ingest.ingest_features(MODEL, "2013-03-14")
    path = f"datasets/{MODEL}/ds=2013-03-14/" + default_lake().partition("datasets", MODEL, "2013-03-14").manifest["files"][0]
    before = default_lake().read_bytes(path)
    second = ingest.ingest_features(MODEL, "2013-03-14")
    assert second["content_hash"] == first["content_hash"]
    assert default_lake().read_bytes(path) == before
