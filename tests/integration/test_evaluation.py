"""`make evaluate-ct` on a short range: three weeks of February 2013, a lake in tmp_path, all three strategies.

The drift policy here is deliberately sensitive, so the drift-triggered strategy takes the retrain
path within the range, and the booster is smaller (max_iter 50) to keep the test quick; the
full-year run uses the model YAML as it is."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.integration
START, END = "2013-02-01", "2013-02-21"
DAYS = [f"2013-02-{d:02d}" for d in range(1, 22)]
SENSITIVE = {"share": 0.25, "min_effect_size": 0.05, "drifted_days": 1, "window_days": 1, "cooldown_days": 7}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from dataclasses import replace

    from mlplatform import evaluation
    from mlplatform.config import model_config

    cfg = model_config("flight_delay")
    cfg = replace(cfg, training=replace(cfg.training, params={**cfg.training.params, "max_iter": 50}))
    workdir = tmp_path_factory.mktemp("evaluate-ct")
    out = workdir / "docs" / "continuous_training.md"
    result = evaluation.evaluate(START, END, out=out, workdir=workdir, cfg=cfg,
                                 policy=replace(cfg.drift_policy, **SENSITIVE), workers=1)
    return {"result": result, "out": out, "workdir": workdir, "cfg": cfg}


@pytest.fixture(scope="module")
def source():
    from mlplatform.evaluation import SourceTables

    return SourceTables.from_seed()


def midnight(ds: str) -> datetime:
    return datetime.fromisoformat(ds)


def test_every_strategy_has_realized_metrics_for_every_day(run):
    strategies = run["result"]["strategies"]
    assert set(strategies) == {"frozen", "scheduled", "drift_triggered"}
    for name, s in strategies.items():
        assert [d["ds"] for d in s["days"]] == DAYS, name
        for d in s["days"]:
            # a single day's AUC of this weak model can fall below 0.5 (e.g. the 2013-02-08 blizzard)
            assert 0 < d["roc_auc"] < 1 and math.isfinite(d["log_loss"]) and d["labelled_rows"] > 100, (name, d)


def test_frozen_trains_once_and_scheduled_weekly(run):
    strategies = run["result"]["strategies"]
    frozen, scheduled = strategies["frozen"], strategies["scheduled"]
    assert [t["cutoff_ds"] for t in frozen["trainings"]] == [START]
    assert {d["champion"] for d in frozen["days"]} == {START}
    assert [t["cutoff_ds"] for t in scheduled["trainings"]] == ["2013-02-01", "2013-02-08", "2013-02-15"]
    assert [t["reason"] for t in scheduled["trainings"]] == ["initial"] + ["schedule"] * 2
    summary = run["result"]["summary"]
    assert (summary["frozen"]["trainings"], summary["scheduled"]["trainings"]) == (1, 3)


def test_a_promoted_training_serves_from_the_next_day_and_a_rejected_one_never(run):
    for name, s in run["result"]["strategies"].items():
        champion_by_day = {d["ds"]: d["champion"] for d in s["days"]}
        for t in s["trainings"][1:]:
            next_day = (midnight(t["cutoff_ds"]) + timedelta(days=1)).date().isoformat()
            assert champion_by_day[t["cutoff_ds"]] != t["cutoff_ds"], name  # not on its own cut-off day
            if next_day in champion_by_day:
                assert (champion_by_day[next_day] == t["cutoff_ds"]) == t["promoted"], (name, t["cutoff_ds"])


def test_drift_triggered_trains_exactly_when_the_policy_says_retrain(run):
    drift = run["result"]["strategies"]["drift_triggered"]
    retrain_days = [d["ds"] for d in drift["days"] if d["action"] == "retrain"]
    assert retrain_days, "the sensitive policy should have asked for a retraining in February"
    assert [t["cutoff_ds"] for t in drift["trainings"]] == [START] + retrain_days
    assert all(t["reason"] in ("drift", "performance") for t in drift["trainings"][1:])
    last_training = START
    for d in drift["days"]:  # nothing retrains within the cooldown of the last training, promoted or refused
        if d["action"] == "retrain":
            assert (midnight(d["ds"]) - midnight(last_training)).days >= SENSITIVE["cooldown_days"]
            last_training = d["ds"]


def test_every_training_set_respects_the_cutoff(run, source):
    """Checked from outside: re-assemble each training set from the lake and look every row up in the source."""
    from mlplatform.lake import Lake
    from mlplatform.training import assemble_training_set

    cfg = run["cfg"]
    lake = Lake((run["workdir"] / "lake").as_uri())
    sched = source.schedule.set_index("FLIGHT_ID")["SCHED_DEPARTURE"]
    available = source.outcomes.set_index("FLIGHT_ID")["AVAILABLE_AT"]
    cutoffs = {t["cutoff_ds"] for s in run["result"]["strategies"].values() for t in s["trainings"]}
    for cutoff in sorted(cutoffs):
        frame = assemble_training_set(lake, cfg, cutoff).frame
        ids = frame["FLIGHT_ID"]
        assert sched.reindex(ids).max() < midnight(cutoff), cutoff
        assert sched.reindex(ids).min() >= midnight(cutoff) - timedelta(days=cfg.training.window_days), cutoff
        assert available.reindex(ids).max() < midnight(cutoff), cutoff
        # ...and nothing known was left out: labels from the last hours before the cut-off are used
        assert available.reindex(ids).max() > midnight(cutoff) - timedelta(hours=6), cutoff
    for s in run["result"]["strategies"].values():
        for t in s["trainings"]:  # the evaluation's own audit says the same
            assert t["last_scheduled"] < t["cutoff_ds"] and t["last_label_available_at"] < t["cutoff_ds"]


def test_the_lake_cuts_days_like_the_ingest_jobs(run, source):
    from mlplatform.lake import Lake

    cfg = run["cfg"]
    lake = Lake((run["workdir"] / "lake").as_uri())
    ds = "2013-02-10"
    features = lake.read_partition(lake.partition("datasets", cfg.name, ds))
    expected = source.schedule[source.schedule["FLIGHT_DATE"].astype(str) == ds]
    assert sorted(features["FLIGHT_ID"]) == sorted(expected["FLIGHT_ID"])
    assert features["ORIGIN_WX_OBSERVED_AT"].max() < midnight(ds)  # weather as of the cut-off only
    assert features["ORIGIN_WX_OBSERVED_AT"].min() >= midnight(ds) - timedelta(hours=cfg.context.lookback_hours)
    labels = lake.read_partition(lake.partition("labels", cfg.name, ds))
    assert labels["AVAILABLE_AT"].min() >= midnight("2013-02-09") and labels["AVAILABLE_AT"].max() < midnight(ds)
    assert lake.partition("datasets", cfg.name, "2013-02-22") is None  # nothing past the replay's end


def test_the_monitor_only_sees_labels_available_before_the_cutoff(run, source):
    import numpy as np

    from mlplatform.evaluation import Replay
    from mlplatform.lake import Lake

    cfg = run["cfg"]
    replay = Replay(Lake((run["workdir"] / "lake").as_uri()), cfg, source)
    flights = source.schedule[source.schedule["FLIGHT_DATE"].astype(str) == "2013-02-10"]["FLIGHT_ID"]
    outcomes = source.outcomes.set_index("FLIGHT_ID").reindex(flights)
    assert not replay.known_labels("2013-02-10", "2013-02-10").any()  # nothing of a day is known at its start
    for asof in ("2013-02-11", "2013-02-12"):
        landed = (outcomes["AVAILABLE_AT"] < midnight(asof)) & outcomes["ARR_DELAY"].notna()
        assert replay.known_labels("2013-02-10", asof).sum() == landed.sum() > 0
    assert np.isnan(replay.day("2013-02-10")["truth"]).sum() == outcomes["ARR_DELAY"].isna().sum()


def test_markdown_and_json(run):
    text = run["out"].read_text()
    for label in ("frozen", "scheduled", "drift-triggered"):
        assert sum(line.startswith(f"| 2013-02 | {label} |") for line in text.splitlines()) == 1
        assert sum(line.startswith(f"| {label} | 0.") for line in text.splitlines()) == 1
    assert "## Method" in text and "Runtime" in text
    raw = json.loads(run["out"].with_suffix(".json").read_text())
    assert raw["meta"]["drift_policy"]["share"] == SENSITIVE["share"]
    assert len(raw["strategies"]["drift_triggered"]["days"]) == len(DAYS)
