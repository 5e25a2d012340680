"""The whole lifecycle through real DAG runs (dag.test) against the warehouse emulator, the lake and MLflow:
train once, then ingest -> score -> monitor for a few days, then a forced drift day takes the retrain branch."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
HISTORY = [f"2013-01-{d:02d}" for d in range(10, 32)]
DAYS = ["2013-02-01", "2013-02-02"]
DRIFT_DAY = "2013-02-03"


def run_dag(dagbag, stage: str, ds: str, conf: dict | None = None):
    dag = dagbag.dags[f"{MODEL}__{stage}"]
    run = dag.test(logical_date=datetime.fromisoformat(ds).replace(tzinfo=timezone.utc), run_conf=conf)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def warehouse_count(warehouse, ds: str) -> int:
    sql = "SELECT COUNT(*) AS N FROM FLIGHTS.RAW.FLIGHT_SCHEDULE WHERE FLIGHT_DATE = %(ds)s"
    return int(warehouse.query(sql, {"ds": ds}).frame["N"].iloc[0])


def shift_day_in_warehouse(warehouse, ds: str) -> None:
    """A day unlike any in the reference, yet inside the data contract: long routes, late departures, a new carrier."""
    warehouse.execute(
        "UPDATE FLIGHTS.RAW.FLIGHT_SCHEDULE SET DISTANCE = 4000 + MOD(FLIGHT_ID, 1000), SCHED_DEP_TIME = 2200, "
        "SCHED_ARR_TIME = 2355, CARRIER = 'ZZ' WHERE FLIGHT_DATE = %(ds)s", {"ds": ds})


@pytest.fixture(scope="module")
def pipeline(local_servers, warehouse):
    from airflow.dag_processing.dagbag import DagBag

    from mlplatform import jobs

    for ds in HISTORY:
        jobs.ingest_labels(MODEL, ds)
        jobs.ingest_features(MODEL, ds)
    bag = DagBag(str(REPO / "dags"))
    results = {"train": run_dag(bag, "train", "2013-02-01", {"cutoff_ds": "2013-02-01", "reason": "initial"})}
    for ds in DAYS:
        for stage in ("ingest", "score", "monitor"):
            results[(stage, ds)] = run_dag(bag, stage, ds)
    shift_day_in_warehouse(warehouse, DRIFT_DAY)
    for stage in ("ingest", "score", "monitor"):
        results[(stage, DRIFT_DAY)] = run_dag(bag, stage, DRIFT_DAY)
    return results


def test_every_run_succeeded(pipeline):
    for key, (run, states) in pipeline.items():
        assert run.state == "success", (key, states)


def test_partitions_match_the_warehouse(pipeline, warehouse):
    from mlplatform.jobs import lake

    for ds in DAYS:
        part = lake().partition("datasets", MODEL, ds)
        assert part.row_count == warehouse_count(warehouse, ds) > 500
        assert part.manifest["source"]["query_id"]
        next_day = (datetime.fromisoformat(ds) + timedelta(days=1)).strftime("%Y-%m-%d")
        assert part.manifest["source"]["params"] == {"start": f"{ds} 00:00:00", "end": f"{next_day} 00:00:00"}


def test_a_registered_version_is_champion(pipeline, local_servers):
    from mlplatform.config import settings
    from mlplatform.registry import CHAMPION, client, version_by_alias

    champion = version_by_alias(client(settings().mlflow_tracking_uri), MODEL, CHAMPION)
    assert champion is not None
    run = client(settings().mlflow_tracking_uri).get_run(champion.run_id)
    assert run.data.tags["trigger_reason"] == "initial"
    assert run.data.metrics["holdout_roc_auc"] > 0.55
    assert run.inputs.dataset_inputs, "the training set is logged as an MLflow input"


def test_one_prediction_per_ingested_row(pipeline, warehouse):
    from mlplatform.jobs import lake

    for ds in DAYS + [DRIFT_DAY]:
        ingested = lake().partition("datasets", MODEL, ds)
        predictions = lake().read_partition(lake().partition("predictions", MODEL, ds))
        assert len(predictions) == ingested.row_count
        assert set(predictions["input_partition_hash"]) == {ingested.content_hash}
        assert predictions["model_version"].notna().all()
        in_table = warehouse.query("SELECT COUNT(*) AS N FROM FLIGHTS.ML.PREDICTIONS WHERE MODEL_NAME = %(m)s AND DS = %(ds)s",
                                   {"m": MODEL, "ds": ds}).frame["N"].iloc[0]
        assert in_table == ingested.row_count


def test_daily_reports_hold_per_feature_drift(pipeline):
    from mlplatform.config import model_config
    from mlplatform.jobs import lake

    features = [f.name for f in model_config(MODEL).drift_features]
    for ds in DAYS + [DRIFT_DAY]:
        html = lake().read_bytes(f"reports/{MODEL}/ds={ds}/drift_report.html").decode()
        summary = lake().read_json(f"reports/{MODEL}/ds={ds}/summary.json")
        assert {c["column"] for c in summary["columns"]} >= set(features)
        for feature in features:
            assert feature in html
    assert pipeline[("monitor", DAYS[0])][1]["no_drift"] == "success"


def test_forced_drift_takes_retrain_branch_and_alerts(pipeline):
    from mlplatform.config import settings

    _, states = pipeline[("monitor", DRIFT_DAY)]
    assert states["request_retrain"] == "success" and states["no_drift"] == "skipped"
    alerts = [json.loads(line) for line in settings().outbox_path.read_text().splitlines()]
    drift = [a for a in alerts if a["kind"] == "drift"]
    assert len(drift) == 1 and DRIFT_DAY in drift[0]["text"]


def test_rerunning_ingest_is_idempotent(pipeline):
    from mlplatform import jobs

    before = jobs.lake().partition("datasets", MODEL, DAYS[0]).content_hash
    assert jobs.ingest_features(MODEL, DAYS[0])["content_hash"] == before


def test_nothing_after_the_cutoff_reaches_training_or_scoring(pipeline):
    """For cut-off D: every training label was available before D, every training row was scheduled before D,
    and every weather value joined to a scored day was observed before that day's cut-off."""
    import pandas as pd

    from mlplatform.config import model_config
    from mlplatform.jobs import lake
    from mlplatform.training import assemble_training_set

    cfg = model_config(MODEL)
    cutoff = pd.Timestamp("2013-02-01")
    ts = assemble_training_set(lake(), cfg, "2013-02-01")
    assert (pd.to_datetime(ts.frame["SCHED_DEPARTURE"]) < cutoff).all()
    labels = pd.concat([lake().read_partition(lake().partition("labels", MODEL, p["ds"])) for p in ts.label_partitions])
    used = labels[labels["FLIGHT_ID"].isin(ts.frame["FLIGHT_ID"])]
    assert len(used) == len(ts.frame) and (pd.to_datetime(used["AVAILABLE_AT"]) < cutoff).all()
    for ds in DAYS + [DRIFT_DAY]:
        scored = lake().read_partition(lake().partition("datasets", MODEL, ds))
        observed = pd.to_datetime(scored["ORIGIN_WX_OBSERVED_AT"]).dropna()
        assert len(observed) and (observed < pd.Timestamp(ds)).all()
        assert (observed >= pd.Timestamp(ds) - pd.Timedelta(hours=cfg.context.lookback_hours)).all()


def test_lineage_walks_both_ways(pipeline):
    from mlplatform import lineage
    from mlplatform.jobs import lake

    rows = lake().read_partition(lake().partition("predictions", MODEL, DAYS[0]))
    key = str(rows["FLIGHT_ID"].iloc[0])
    chain = lineage.backward(MODEL, DAYS[0], key)
    assert str(chain["prediction"]["FLIGHT_ID"]) == key
    assert chain["model_version"]["version"] == chain["prediction"]["model_version"]
    assert chain["training_run"]["trigger_reason"] == "initial"
    assert chain["training_set"]["feature_partitions"] and chain["input_partition"]["query_id"]
    assert len(chain["warehouse_query_ids"]) >= len(chain["training_set"]["feature_partitions"])

    made = lineage.forward(MODEL, chain["model_version"]["version"])
    assert {p["ds"] for p in made["prediction_partitions"]} >= set(DAYS)
    assert lineage.main(["model", MODEL, chain["model_version"]["version"]]) == 0
