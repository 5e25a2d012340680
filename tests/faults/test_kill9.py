"""kill -9 of the process doing the work, at a named step of ingest, scoring and training, then a re-run.

Each time: the re-run's outputs are byte-identical to an uninterrupted run's; a reader polling all along
sees the previous version or nothing, never a half-written partition; what the dead process left lies under
_tmp/ only (swept later) or is a file the re-run commits; no model version is registered twice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.faults.conftest import CUTOFF
from tests.faults.harness import (FAULT_MODEL, HeldProcess, PartitionWatch, data_file_hashes, feature_accounting,
                                  prediction_accounting, record, stray_files, training_rows_lost,
                                  versions_per_key)

pytestmark = pytest.mark.integration
INGEST_DAY = "2013-03-06"  # never ingested before this test


def temp_files(lake) -> set[str]:
    return set(lake.list_dir("_tmp"))


@pytest.mark.parametrize("point", ["lake.before_rename", "lake.before_manifest"])
def test_kill9_mid_ingest(champion, reference, warehouse, tmp_path, point):
    from mlplatform import ingest
    from mlplatform.lake import default_lake

    lake = default_lake()
    expected = reference.ingest(INGEST_DAY, areas=("datasets",))["datasets"]
    lake.delete(lake.partition_dir("datasets", FAULT_MODEL, INGEST_DAY))  # the other parametrization's
    temp_before = temp_files(lake)
    with PartitionWatch(lake, "datasets", FAULT_MODEL, INGEST_DAY) as watch:
        held = HeldProcess(f"from mlplatform import ingest\ningest.ingest_features({FAULT_MODEL!r}, {INGEST_DAY!r})",
                           point, tmp_path).wait_held()
        killed = held.kill()
        seen_before_rerun, reads_before_rerun = set(watch.seen), watch.reads
        left_outside_tmp = stray_files(lake, "datasets", FAULT_MODEL)
        left_in_tmp = temp_files(lake) - temp_before
        ingest.ingest_features(FAULT_MODEL, INGEST_DAY)

    final = lake.partition("datasets", FAULT_MODEL, INGEST_DAY)
    assert reads_before_rerun > 0 and seen_before_rerun == {None}, "while held and once killed: nothing"
    assert not watch.errors and watch.seen <= {None, final.content_hash}, (watch.errors[:3], watch.seen)
    if point == "lake.before_rename":  # the data were still in _tmp/, which the sweep empties
        assert not left_outside_tmp and len(left_in_tmp) == 1
        assert left_in_tmp <= set(lake.sweep_temp(older_than=timedelta(0)))
    else:  # the content-addressed data file is in place, unnamed until the re-run commits the same bytes
        assert left_outside_tmp == [f"{lake.partition_dir('datasets', FAULT_MODEL, INGEST_DAY)}/{f}" for f in expected]
    assert stray_files(lake, "datasets", FAULT_MODEL) == []
    rows_lost, duplicates = feature_accounting(warehouse, lake, FAULT_MODEL, INGEST_DAY)
    record(f"kill9-mid-ingest@{point}", injected=killed,
           survived=data_file_hashes(lake, "datasets", FAULT_MODEL, INGEST_DAY) == expected,
           rows_lost=rows_lost, duplicates=duplicates)


def test_kill9_mid_score(champion, warehouse, tmp_path):
    """Killed with the predictions half-written to a temporary file, then with the warehouse copy inside its
    transaction. The day was scored once before, so readers must keep seeing that version."""
    from mlplatform import ingest, scoring
    from mlplatform.lake import default_lake

    lake, ds = default_lake(), CUTOFF
    ingest.ingest_features(FAULT_MODEL, ds)
    scoring.score(FAULT_MODEL, ds)  # uninterrupted
    reference = data_file_hashes(lake, "predictions", FAULT_MODEL, ds)
    previous = lake.partition("predictions", FAULT_MODEL, ds).content_hash
    published = published_rows(warehouse, ds)
    code = f"from mlplatform import scoring\nscoring.score({FAULT_MODEL!r}, {ds!r})"
    for point in ("scoring.chunk_written", "warehouse.before_commit"):
        temp_before = temp_files(lake)
        with PartitionWatch(lake, "predictions", FAULT_MODEL, ds) as watch:
            held = HeldProcess(code, point, tmp_path).wait_held()
            in_transaction = published_rows(warehouse, ds)
            killed = held.kill()
            left_in_tmp = temp_files(lake) - temp_before
            scoring.score(FAULT_MODEL, ds)
        assert not watch.errors and watch.seen == {previous}, (point, watch.errors[:3], watch.seen)
        assert in_transaction == published, f"{point}: a reader saw the warehouse copy before its commit"
        assert stray_files(lake, "predictions", FAULT_MODEL) == []
        assert len(left_in_tmp) == (point == "scoring.chunk_written"), "the half-written file, in _tmp/ only"
        assert left_in_tmp <= set(lake.sweep_temp(older_than=timedelta(0)))
        rows_lost, duplicates = prediction_accounting(warehouse, lake, FAULT_MODEL, ds)
        record(f"kill9-mid-score@{point}", injected=killed,
               survived=data_file_hashes(lake, "predictions", FAULT_MODEL, ds) == reference
               and published_rows(warehouse, ds) == published,
               rows_lost=rows_lost, duplicates=duplicates)


def published_rows(warehouse, ds: str) -> int:
    sql = "SELECT COUNT(*) AS N FROM FLIGHTS.ML.PREDICTIONS WHERE MODEL_NAME = %(m)s AND DS = %(ds)s"
    return int(warehouse.query(sql, {"m": FAULT_MODEL, "ds": ds}).frame["N"].iloc[0])


def test_kill9_mid_train(champion, tmp_path):
    """Killed inside its MLflow run, before the model is logged; the retry in the same Airflow run ends the
    dead run FAILED and registers one version, trained on the same set, scoring the same holdout AUC as the
    uninterrupted training of the same cut-off."""
    from mlplatform import registry, training
    from mlplatform.config import settings

    run = f"{FAULT_MODEL}__train/kill9"
    held = HeldProcess("from mlplatform import training\n"
                       f"training.train_challenger({FAULT_MODEL!r}, {CUTOFF!r}, 'manual', search_budget=0, "
                       f"airflow_run={run!r})", "training.before_model", tmp_path).wait_held()
    killed = held.kill()
    mlc = registry.client(settings().mlflow_tracking_uri)
    key = training.idempotency_key(FAULT_MODEL, CUTOFF, champion["dataset_version"], run)
    experiment = mlc.get_experiment_by_name(FAULT_MODEL).experiment_id
    (dead,) = mlc.search_runs([experiment], f"tags.idempotency_key = '{key}'")
    assert dead.info.status == "RUNNING" and versions_per_key(mlc, FAULT_MODEL, key) == 0

    outcome = training.train_challenger(FAULT_MODEL, CUTOFF, "manual", search_budget=0, airflow_run=run)

    assert mlc.get_run(dead.info.run_id).info.status == "FAILED"
    assert outcome["dataset_version"] == champion["dataset_version"]
    versions = versions_per_key(mlc, FAULT_MODEL, key)
    record("kill9-mid-train", injected=killed, survived=outcome["holdout_auc"] == champion["holdout_auc"],
           rows_lost=training_rows_lost(mlc, champion["run_id"], outcome["run_id"]), duplicates=versions - 1)
