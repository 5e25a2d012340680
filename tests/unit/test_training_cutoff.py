"""A training's cut-off must be a labelled day in the lake: any other fails the train task at once, naming the
lake's labelled days, and the trigger form states them without ever holding DAG parsing up."""

from __future__ import annotations

import socket
import time

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlplatform import training
from mlplatform.lake import Lake
from mlplatform.orchestration import fail_fast

MODEL = "flight_delay"
LABELLED = ["2013-01-02", "2013-01-03", "2013-01-04"]


def labels(day: str) -> pd.DataFrame:
    return pd.DataFrame({"FLIGHT_ID": [1, 2], "ARR_DELAY": [40.0, -5.0], "AVAILABLE_AT": pd.Timestamp(day)})


@pytest.fixture
def lake(tmp_path, monkeypatch) -> Lake:
    """The platform lake (MLOPS_LAKE_URI) with three label partitions, and a day whose writer died before its
    manifest: not a labelled day."""
    monkeypatch.setenv("MLOPS_LAKE_URI", (tmp_path / "lake").as_uri())
    lake = Lake((tmp_path / "lake").as_uri())
    for day in LABELLED:
        lake.commit_partition("labels", MODEL, day, labels(day), {})
    lake.write_bytes(f"labels/{MODEL}/ds=2013-01-05/part-unfinished.parquet", b"no manifest")
    return lake


def test_the_labelled_days_are_the_committed_label_partitions(lake, tmp_path):
    assert training.labelled_days(lake, MODEL) == ("2013-01-02", "2013-01-04")
    assert training.describe_labelled_days(("2013-01-02", "2013-01-04")) == \
        "labelled days in the lake: 2013-01-02 .. 2013-01-04"
    assert training.labelled_days(Lake((tmp_path / "empty").as_uri()), MODEL) is None
    assert training.describe_labelled_days(None) == "no labelled days yet"


@pytest.mark.parametrize("cutoff, words", [
    ("2013-01-05", "cut-off 2013-01-05 lies beyond the newest labelled day"),
    ("2013-03-01", "cut-off 2013-03-01 lies beyond the newest labelled day"),
    ("2013-01-01", "cut-off 2013-01-01 lies before the first labelled day")])
def test_a_cutoff_outside_the_labelled_days_fails_the_train_task_at_once(lake, cutoff, words):
    """Through the DAG's own wrapper: AirflowFailException, so no retries; refused before MLflow is reached."""
    with pytest.raises(AirflowFailException) as failure, fail_fast(*training.FAIL_FAST):
        training.train_challenger(MODEL, cutoff, "manual", airflow_run="flight_delay__train/manual__x")
    message = str(failure.value)
    assert words in message
    assert "labelled days in the lake: 2013-01-02 .. 2013-01-04" in message
    assert "choose a cut-off from 2013-01-02 to 2013-01-04" in message


def test_every_labelled_day_is_a_valid_cutoff(lake):
    for day in LABELLED:
        training.check_cutoff(lake, MODEL, day)


def test_an_empty_lake_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LAKE_URI", (tmp_path / "empty").as_uri())
    with pytest.raises(training.CutoffOutsideLabels, match="the lake holds no labelled days yet"):
        training.check_cutoff(Lake((tmp_path / "empty").as_uri()), MODEL, "2013-02-01")
    assert training.labelled_days_for_form(MODEL) == "no labelled days yet"


def test_the_form_reads_the_labelled_days(lake):
    assert training.labelled_days_for_form(MODEL) == "labelled days in the lake: 2013-01-02 .. 2013-01-04"


def test_an_unreachable_lake_does_not_hold_the_form_up(monkeypatch):
    """An S3 endpoint that accepts connections and never answers: the form gives up after its timeout."""
    import s3fs

    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen()
        monkeypatch.setenv("MLOPS_LAKE_URI", "s3://lake-bucket/lake")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{black_hole.getsockname()[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem would keep another endpoint
        try:
            started = time.monotonic()
            text = training.labelled_days_for_form(MODEL, timeout_s=0.5)
            elapsed = time.monotonic() - started
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
    assert text == "the lake's labelled days could not be read when this form was built (no answer within 0.5 s)"
    assert elapsed < 2
