"""The whole lifecycle through real DAG runs (dag.test) against the warehouse emulator, the lake and MLflow:
train once, then ingest -> score -> monitor for a few days; two shifted days take the alert and then the
retrain branch; a forced promotion, a rollback, and a champion set by hand in MLflow follow, which scoring
logs as an external move and a second rollback undoes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
HISTORY = [f"2013-01-{d:02d}" for d in range(10, 32)]
DAYS = ["2013-02-01", "2013-02-02"]
DRIFT_DAYS = ["2013-02-03", "2013-02-04"]
AFTER_ROLLBACK = "2013-02-05"
# The shipped policy, debounced to 2 drifted days of 3 and no cooldown, so two shifted days reach retraining.
TEST_POLICY = {"drifted_days": 2, "window_days": 3, "cooldown_days": 0}


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
def models_dir(tmp_path_factory):
    import os

    import yaml

    from mlplatform.config import settings

    raw = yaml.safe_load((REPO / "include" / "models" / f"{MODEL}.yaml").read_text())
    raw["drift_policy"].update(TEST_POLICY)
    directory = tmp_path_factory.mktemp("models")
    (directory / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    previous = os.environ.get("MLOPS_MODELS_DIR")
    os.environ["MLOPS_MODELS_DIR"] = str(directory)
    assert settings().models_dir == directory
    yield directory
    if previous is None:
        os.environ.pop("MLOPS_MODELS_DIR")
    else:
        os.environ["MLOPS_MODELS_DIR"] = previous


@pytest.fixture(scope="module")
def pipeline(local_servers, warehouse, models_dir):
    from airflow.dag_processing.dagbag import DagBag

    from mlplatform import ingest
    from mlplatform.lake import default_lake
    from mlplatform.config import settings
    from mlplatform.registry import CHAMPION, client, set_alias

    for ds in HISTORY:
        ingest.ingest_labels(MODEL, ds)
        ingest.ingest_features(MODEL, ds)
    # The outcomes known by the first cut-off (2013-02-01 00:00), as that day's ingest brings them before training:
    # a cut-off must be a labelled day.
    ingest.ingest_labels(MODEL, DAYS[0])
    bag = DagBag(str(REPO / "dags"))
    results = {"train": run_dag(bag, "train", "2013-02-01",
                                {"cutoff_ds": "2013-02-01", "reason": "initial", "search_budget": 2})}
    for ds in DAYS + DRIFT_DAYS:
        if ds in DRIFT_DAYS:
            shift_day_in_warehouse(warehouse, ds)
        for stage in ("ingest", "score", "monitor"):
            results[(stage, ds)] = run_dag(bag, stage, ds)
    results["retrain"] = run_dag(bag, "train", DRIFT_DAYS[-1], {"cutoff_ds": DRIFT_DAYS[-1], "reason": "drift",
                                                                "search_budget": 2, "force_promote": True})
    results["rollback"] = run_dag(bag, "rollback", DRIFT_DAYS[-1], {"version": "previous", "reason": "test rollback"})
    set_alias(client(settings().mlflow_tracking_uri), MODEL, CHAMPION, "2")  # a person, in the MLflow UI
    for stage in ("ingest", "score"):
        results[(stage, AFTER_ROLLBACK)] = run_dag(bag, stage, AFTER_ROLLBACK)
    results["rollback after the hand move"] = run_dag(bag, "rollback", AFTER_ROLLBACK,
                                                      {"version": "previous", "reason": "undo the hand move"})
    return results


def test_every_run_succeeded(pipeline):
    for key, (run, states) in pipeline.items():
        assert run.state == "success", (key, states)


def test_partitions_match_the_warehouse(pipeline, warehouse):
    from mlplatform.lake import default_lake as lake

    for ds in DAYS:
        part = lake().partition("datasets", MODEL, ds)
        assert part.row_count == warehouse_count(warehouse, ds) > 500
        assert part.manifest["source"]["query_id"]
        assert part.manifest["source"]["params"] == {"day": ds}  # selected by the partition column
        assert "WHERE FLIGHT_DATE = %(day)s" in part.manifest["source"]["query"]


def test_first_training_searched_both_families_and_logged_everything(pipeline, local_servers):
    from mlplatform.config import settings
    from mlplatform.registry import client

    mlc = client(settings().mlflow_tracking_uri)
    first = mlc.get_model_version(MODEL, "1")
    run = mlc.get_run(first.run_id)
    assert run.data.tags["trigger_reason"] == "initial" and run.data.tags["logical_date"] == "2013-02-01"
    assert run.data.tags["code_version"] and run.data.params["family"] in ("hist_gradient_boosting", "logistic_regression")
    for metric in ("roc_auc", "log_loss", "brier", "precision", "recall"):
        assert f"holdout_{metric}" in run.data.metrics
    assert run.data.metrics["holdout_roc_auc"] > 0.55
    assert run.inputs.dataset_inputs, "the training set is logged as an MLflow input"
    children = mlc.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {c.data.params["family"] for c in children} == {"hist_gradient_boosting", "logistic_regression"}
    assert all("cv_roc_auc_mean" in c.data.metrics for c in children)
    assert first.tags["gate_promote"] == "true" and "prior-rate baseline" in first.tags["gate_compared_with"]


def test_one_prediction_per_ingested_row(pipeline, warehouse):
    from mlplatform.lake import default_lake as lake

    for ds in DAYS + DRIFT_DAYS:
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
    from mlplatform.lake import default_lake as lake

    features = [f.name for f in model_config(MODEL).drift_features]
    for ds in DAYS + DRIFT_DAYS:
        html = lake().read_bytes(f"reports/{MODEL}/ds={ds}/drift_report.html").decode()
        summary = lake().read_json(f"reports/{MODEL}/ds={ds}/summary.json")
        assert {c["column"] for c in summary["columns"]} >= set(features)
        for feature in features:
            assert feature in html
        assert summary["decision"]["policy"]["drifted_days"] == TEST_POLICY["drifted_days"]


def branch_taken(states: dict) -> str:
    (taken,) = [t for t in ("request_retrain", "alert_only", "nothing_to_do") if states[t] == "success"]
    return taken


def test_drift_is_debounced_quiet_then_alert_then_retrain(pipeline):
    from mlplatform.config import settings

    taken = [branch_taken(pipeline[("monitor", ds)][1]) for ds in DAYS + DRIFT_DAYS]
    assert taken == ["nothing_to_do", "nothing_to_do", "alert_only", "request_retrain"]
    alerts = [json.loads(line) for line in settings().outbox_path.read_text().splitlines()]
    drift = [a["text"] for a in alerts if a["kind"] == "drift"]
    assert len(drift) == 2 and "No retraining yet" in drift[0] and "Retraining requested (drift)" in drift[1]


def test_promotion_log_records_every_move_including_the_one_by_hand(pipeline):
    from mlplatform import promotion
    from mlplatform.config import settings
    from mlplatform.lake import default_lake as lake
    from mlplatform.registry import CHAMPION, client, version_by_alias

    log = promotion.entries(lake(), MODEL)
    assert [(e["seq"], e["from_version"], e["to_version"]) for e in log] == [
        (1, None, "1"), (2, "1", "2"), (3, "2", "1"), (4, "1", "2"), (5, "2", "1")]
    gate_passed = log[1]["evidence"]["promote"]
    assert log[1]["action"] == ("promote" if gate_passed else "manual_promote")
    assert log[2]["action"] == "rollback" and log[2]["reason"] == "test rollback"
    assert log[0]["actor"].startswith("airflow") and log[0]["evidence"]["ci95"][0] > 0
    hand_move = log[3]
    assert hand_move["action"] == "external_move" and hand_move["at"]
    assert hand_move["evidence"]["detected_by"].startswith(f"score of {MODEL} {AFTER_ROLLBACK} in airflow:{MODEL}__score.")
    assert (log[4]["action"], log[4]["reason"]) == ("rollback", "undo the hand move"), "previous works after a hand move"
    assert log[4]["evidence"]["airflow_run"].startswith(f"{MODEL}__rollback/")
    assert version_by_alias(client(settings().mlflow_tracking_uri), MODEL, CHAMPION).version == "1"


def test_scoring_follows_a_champion_set_by_hand_in_mlflow(pipeline):
    from mlplatform.lake import default_lake as lake

    predictions = lake().partition("predictions", MODEL, AFTER_ROLLBACK)
    assert predictions.manifest["model_version"] == "2", "the alias is resolved when scoring runs"
    assert lake().partition("predictions", MODEL, DAYS[0]).manifest["model_version"] == "1"


def test_rerunning_ingest_is_idempotent(pipeline):
    from mlplatform import ingest
    from mlplatform.lake import default_lake

    before = default_lake().partition("datasets", MODEL, DAYS[0]).content_hash
    assert ingest.ingest_features(MODEL, DAYS[0])["content_hash"] == before


def test_nothing_after_the_cutoff_reaches_training_or_scoring(pipeline):
    """For cut-off D: every training label was available before D, every training row was scheduled before D,
    and every weather value joined to a scored day was observed before that day's cut-off."""
    import pandas as pd

    from mlplatform.config import model_config
    from mlplatform.lake import default_lake as lake
    from mlplatform.training import assemble_training_set

    cfg = model_config(MODEL)
    cutoff = pd.Timestamp("2013-02-01")
    ts = assemble_training_set(lake(), cfg, "2013-02-01")
    assert (pd.to_datetime(ts.frame["SCHED_DEPARTURE"]) < cutoff).all()
    labels = pd.concat([lake().read_partition(lake().partition("labels", MODEL, p["ds"])) for p in ts.label_partitions])
    used = labels[labels["FLIGHT_ID"].isin(ts.frame["FLIGHT_ID"])]
    assert len(used) == len(ts.frame) and (pd.to_datetime(used["AVAILABLE_AT"]) < cutoff).all()
    for ds in DAYS + DRIFT_DAYS:
        scored = lake().read_partition(lake().partition("datasets", MODEL, ds))
        observed = pd.to_datetime(scored["ORIGIN_WX_OBSERVED_AT"]).dropna()
        assert len(observed) and (observed < pd.Timestamp(ds)).all()
        assert (observed >= pd.Timestamp(ds) - pd.Timedelta(hours=cfg.context.lookback_hours)).all()


def test_lineage_walks_both_ways(pipeline):
    from mlplatform import lineage
    from mlplatform.lake import default_lake as lake

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


def test_delayed_labels_give_a_performance_report_logged_to_mlflow(pipeline, local_servers):
    """The monitor of Feb 3 finds Feb 1 fully labelled: its realized performance joins its summary."""
    from mlplatform.config import settings
    from mlplatform.lake import default_lake as lake
    from mlplatform.registry import client

    from mlplatform.config import model_config
    from mlplatform.monitoring import read_day

    assert pipeline[("monitor", DRIFT_DAYS[0])][0].state == "success"
    summary = read_day(model_config(MODEL), DAYS[0])
    performance = summary["performance"]
    assert performance["labels_known_at"] == DRIFT_DAYS[0]
    assert 0.5 < performance["roc_auc"] <= 1 and 0 < performance["late_rate"] < 1
    assert performance["rows"] > 500 and summary["observation"]["realized_auc"] == performance["roc_auc"]
    html = lake().read_bytes(f"reports/{MODEL}/ds={DAYS[0]}/performance_report.html").decode()
    assert "<html" in html.lower()

    mlc = client(settings().mlflow_tracking_uri)
    experiment = mlc.get_experiment_by_name(f"{MODEL}-monitoring")
    (run,) = mlc.search_runs([experiment.experiment_id], f"tags.ds = '{DAYS[0]}'")
    assert run.data.tags["model_version"] == "1"
    assert run.data.metrics["realized_roc_auc"] == pytest.approx(performance["roc_auc"])
    assert "drift_share" in run.data.metrics


def test_the_evidently_workspace_is_built_from_the_lake(pipeline, tmp_path):
    """`make reports-ui` syncs the monitor's runs from the lake: the tasks themselves write no local workspace."""
    from mlplatform import evidently_workspace as ew
    from mlplatform.lake import REPORTS_AREA
    from mlplatform.lake import default_lake as lake

    assert ew.sync_from_lake(lake(), MODEL, REPORTS_AREA, tmp_path / "evidently") >= len(DAYS + DRIFT_DAYS) + 1
    runs = ew.EvidentlyWorkspace(tmp_path / "evidently").runs(MODEL)
    assert {r["ds"] for r in runs if r["kind"] == "drift"} >= set(DAYS + DRIFT_DAYS)
    assert (DAYS[0], "performance") in {(r["ds"], r["kind"]) for r in runs}
    assert not ew.workspace_path().exists(), "a task wrote the local Evidently workspace"


def test_the_cooldown_anchor_is_the_last_training_before_the_day(pipeline):
    """Trainings with cut-offs 2013-02-01 and DRIFT_DAYS[-1] are registered; a re-run of an earlier day must
    not see the later one, whatever the challenger alias points at now."""
    from mlplatform.config import model_config
    from mlplatform.monitoring import last_training_ds as _last_training_ds

    cfg = model_config(MODEL)
    assert _last_training_ds(cfg, "2013-02-01") is None
    assert _last_training_ds(cfg, DRIFT_DAYS[-1]) == "2013-02-01"
    assert _last_training_ds(cfg, AFTER_ROLLBACK) == DRIFT_DAYS[-1]


def test_a_day_evaluated_before_its_own_monitor_ran_keeps_both(pipeline, warehouse):
    """Out of order: AFTER_ROLLBACK's labels arrive and its evaluation runs before its own monitor has run
    (its summary does not exist yet); then its monitor runs. Its record holds both, in the lake and in MLflow."""
    from mlplatform import ingest, monitoring
    from mlplatform.config import model_config, settings
    from mlplatform.registry import client

    cfg = model_config(MODEL)
    labels_known_at = (datetime.fromisoformat(AFTER_ROLLBACK) + timedelta(days=2)).strftime("%Y-%m-%d")
    assert monitoring.labelled_day_for(cfg, labels_known_at) == AFTER_ROLLBACK
    for ds in ("2013-02-06", labels_known_at):
        ingest.ingest_labels(MODEL, ds)
    assert monitoring.read_day(cfg, AFTER_ROLLBACK) is None, "not monitored yet"

    assert monitoring.evaluate_labelled_day(cfg, labels_known_at) == AFTER_ROLLBACK
    evaluated = monitoring.read_day(cfg, AFTER_ROLLBACK)
    assert evaluated["performance"]["labels_known_at"] == labels_known_at and "drift_share" not in evaluated

    monitoring.monitor(MODEL, AFTER_ROLLBACK)
    record = monitoring.read_day(cfg, AFTER_ROLLBACK)
    assert record["drift_share"] is not None and record["decision"]["action"]
    assert record["performance"] == evaluated["performance"]
    assert record["observation"]["realized_auc"] == record["performance"]["roc_auc"]
    mlc = client(settings().mlflow_tracking_uri)
    experiment = mlc.get_experiment_by_name(f"{MODEL}-monitoring")
    (run,) = mlc.search_runs([experiment.experiment_id], f"tags.ds = '{AFTER_ROLLBACK}'")
    assert {"drift_share", "realized_roc_auc"} <= set(run.data.metrics)


def test_each_report_file_has_one_writer(pipeline):
    """Re-running the monitor of the day that evaluates DAYS[0] leaves DAYS[0]'s summary.json alone (the very
    same file), and re-running DAYS[0]'s own monitor leaves its performance.json alone: nothing is lost."""
    import os

    from mlplatform import monitoring
    from mlplatform.config import model_config
    from mlplatform.lake import default_lake as lake

    cfg = model_config(MODEL)
    day_dir = lake().root.rstrip("/") + f"/reports/{MODEL}/ds={DAYS[0]}"
    summary = os.stat(f"{day_dir}/summary.json").st_ino
    before = monitoring.read_day(cfg, DAYS[0])

    assert monitoring.monitor(MODEL, DRIFT_DAYS[0])["labelled_day"] == DAYS[0]
    assert os.stat(f"{day_dir}/summary.json").st_ino == summary, "the evaluation rewrote the monitor's file"
    performance = os.stat(f"{day_dir}/performance.json").st_ino
    monitoring.monitor(MODEL, DAYS[0])
    assert os.stat(f"{day_dir}/performance.json").st_ino == performance, "the monitor rewrote the evaluation's file"
    after = monitoring.read_day(cfg, DAYS[0])
    assert after["performance"] == before["performance"]
    assert after["observation"]["realized_auc"] == before["observation"]["realized_auc"] is not None
