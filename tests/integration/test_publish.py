"""Publishing a predictions partition to the warehouse by bulk load (stage + COPY INTO), against the emulator:
a re-published day replaces the old rows, readers never see a half-loaded day, and a load that fails after
the delete leaves the previous rows. Both kinds of stage: a temporary one the files are PUT to, and an
external stage on the lake, which must load only the files the manifest names."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
ROWS = 500


def predictions_frame(version: str, rows: int = ROWS, first_key: int = 1):
    """Rows shaped as scoring writes them: entity key, score, label and the lineage columns."""
    import numpy as np
    import pandas as pd

    scores = np.linspace(0.0, 1.0, rows)
    return pd.DataFrame({"FLIGHT_ID": np.arange(first_key, first_key + rows, dtype="int64"), "score": scores,
                         "predicted_label": (scores >= 0.5).astype("int64"), "model_name": MODEL,
                         "model_version": version, "mlflow_run_id": f"run-{version}",
                         "input_partition_hash": f"hash-{version}"})


def committed(ds: str, frame):
    from mlplatform.lake import PREDICTIONS_AREA, default_lake

    return default_lake().commit_partition(PREDICTIONS_AREA, MODEL, ds, frame, {"model_version": "test"})


def publish(part) -> int:
    from mlplatform.config import model_config
    from mlplatform.lake import default_lake
    from mlplatform.scoring import publish_predictions

    return publish_predictions(default_lake(), model_config(MODEL), part)


def day_rows(warehouse, ds: str):
    return warehouse.query("SELECT * FROM FLIGHTS.ML.PREDICTIONS WHERE MODEL_NAME = %(m)s AND DS = %(ds)s "
                           "ORDER BY ENTITY_KEY", {"m": MODEL, "ds": ds}).frame


def assert_one_copy_of(warehouse, ds: str, frame) -> None:
    rows = day_rows(warehouse, ds)
    assert len(rows) == len(frame)
    assert sorted(rows["ENTITY_KEY"]) == sorted(frame["FLIGHT_ID"].astype(str)), "each entity exactly once"
    by_key = rows.set_index("ENTITY_KEY").loc[frame["FLIGHT_ID"].astype(str)]
    assert by_key["SCORE"].tolist() == pytest.approx(frame["score"].tolist())
    assert by_key["PREDICTED_LABEL"].tolist() == frame["predicted_label"].tolist()
    for column, field in (("MODEL_VERSION", "model_version"), ("MLFLOW_RUN_ID", "mlflow_run_id"),
                          ("INPUT_PARTITION_HASH", "input_partition_hash")):
        assert set(rows[column]) == set(frame[field]), column
    assert set(rows["MODEL_NAME"]) == {MODEL} and {str(d) for d in rows["DS"]} == {ds}


def test_publishing_a_day_twice_leaves_one_copy_with_lineage(local_servers, warehouse):
    ds = "2014-01-01"
    first = predictions_frame("1")
    assert publish(committed(ds, first)) == ROWS
    assert publish(committed(ds, first)) == ROWS
    assert_one_copy_of(warehouse, ds, first)

    second = predictions_frame("2", rows=ROWS - 100, first_key=51)
    assert publish(committed(ds, second)) == ROWS - 100
    assert_one_copy_of(warehouse, ds, second)


def test_readers_see_the_old_day_until_the_new_one_is_committed(local_servers, warehouse, tmp_path, monkeypatch):
    ds = "2014-01-02"
    old, new = predictions_frame("1"), predictions_frame("2", rows=ROWS + 50)
    publish(committed(ds, old))
    new_part = committed(ds, new)

    flag = tmp_path / "paused"
    monkeypatch.setenv("MLOPS_PAUSE_FLAG", str(flag))
    monkeypatch.setenv("MLOPS_PAUSE_AT", "warehouse.before_commit")
    publisher = threading.Thread(target=publish, args=(new_part,))
    publisher.start()
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline and publisher.is_alive():
        time.sleep(0.05)
    assert flag.exists(), "the load never reached the point before its commit"
    try:
        assert_one_copy_of(warehouse, ds, old)  # deleted and loaded in the open transaction, not visible yet
    finally:
        os.environ["MLOPS_PAUSE_AT"] = ""
        publisher.join(timeout=60)
    assert_one_copy_of(warehouse, ds, new)


def test_a_load_failing_after_the_delete_leaves_the_previous_rows(local_servers, warehouse):
    from snowflake.connector.errors import ProgrammingError

    ds = "2014-01-03"
    good = predictions_frame("1")
    publish(committed(ds, good))
    bad = predictions_frame("2").astype({"predicted_label": str})
    bad.loc[ROWS - 1, "predicted_label"] = "not a label"  # the last row cannot be cast: COPY INTO fails late

    with pytest.raises(ProgrammingError, match="not a label"):
        publish(committed(ds, bad))
    assert_one_copy_of(warehouse, ds, good)
    assert publish(committed(ds, good)) == ROWS, "the warehouse takes the next load of the day"


def test_an_external_stage_on_the_lake_loads_only_the_committed_files(local_servers, warehouse, monkeypatch):
    from mlplatform.config import settings
    from mlplatform.lake import PREDICTIONS_AREA, default_lake

    warehouse.execute(f"CREATE STAGE IF NOT EXISTS FLIGHTS.ML.TEST_LAKE URL = '{settings().lake_uri}/'")
    monkeypatch.setenv("MLOPS_WAREHOUSE_LAKE_STAGE", "FLIGHTS.ML.TEST_LAKE")
    ds = "2014-01-04"
    publish(committed(ds, predictions_frame("1")))
    latest = predictions_frame("2", rows=ROWS - 200)
    part = committed(ds, latest)
    data_files = [n for n in default_lake().list_dir(f"{PREDICTIONS_AREA}/{MODEL}/ds={ds}") if n.endswith(".parquet")]
    assert len(data_files) == 2, "the earlier version's file stays beside the new one"

    assert publish(part) == ROWS - 200
    assert_one_copy_of(warehouse, ds, latest)
