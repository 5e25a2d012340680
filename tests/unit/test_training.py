import numpy as np
import pandas as pd
import pytest

from mlplatform.config import model_config
from mlplatform.lake import Lake
from mlplatform.training import assemble_training_set, evaluate, fit, load_training_set, save_training_set, time_split
from tests.unit.helpers import schedule_rows

CFG = model_config("flight_delay")


def _lake_with_history(tmp_path, days: int = 12) -> Lake:
    """Feature partitions for Jan 1..Jan N; each day's outcomes land in the next day's label partition."""
    lake = Lake(tmp_path.as_uri())
    rng = np.random.default_rng(3)
    for i in range(1, days + 1):
        ds = f"2013-01-{i:02d}"
        raw = schedule_rows(80, ds, seed=i)
        lake.commit_partition("datasets", CFG.name, ds, raw, {})
        late = (raw["SCHED_DEP_TIME"] > 1700) ^ (rng.random(len(raw)) < 0.1)
        labels = pd.DataFrame({"FLIGHT_ID": raw["FLIGHT_ID"], "ARR_DELAY": np.where(late, 40.0, -5.0)})
        lake.commit_partition("labels", CFG.name, f"2013-01-{i + 1:02d}", labels, {})
    return lake


def test_training_set_only_holds_labels_available_before_cutoff(tmp_path):
    lake = _lake_with_history(tmp_path)
    ts = assemble_training_set(lake, CFG, "2013-01-08")
    days = pd.to_datetime(ts.frame["SCHED_DEPARTURE"]).dt.strftime("%Y-%m-%d")
    # Flights of Jan 8 or later are not before the cut-off; Jan 7's outcomes arrive in partition ds=2013-01-08.
    assert days.max() == "2013-01-07"
    assert max(p["ds"] for p in ts.label_partitions) == "2013-01-08"
    assert max(p["ds"] for p in ts.feature_partitions) == "2013-01-07"


def test_dataset_version_is_stable_and_changes_with_data(tmp_path):
    lake = _lake_with_history(tmp_path)
    a = assemble_training_set(lake, CFG, "2013-01-08").version
    assert assemble_training_set(lake, CFG, "2013-01-08").version == a
    assert assemble_training_set(lake, CFG, "2013-01-09").version != a


def test_time_split_keeps_holdout_after_training(tmp_path):
    frame = assemble_training_set(_lake_with_history(tmp_path), CFG, "2013-01-12").frame
    train, holdout = time_split(frame, "SCHED_DEPARTURE", 3)
    assert train["SCHED_DEPARTURE"].max() < holdout["SCHED_DEPARTURE"].min()
    assert holdout["SCHED_DEPARTURE"].dt.normalize().nunique() == 3
    with pytest.raises(ValueError, match="more than"):
        time_split(frame, "SCHED_DEPARTURE", 40)


def test_fit_learns_signal(tmp_path):
    frame = assemble_training_set(_lake_with_history(tmp_path), CFG, "2013-01-12").frame
    train, holdout = time_split(frame, "SCHED_DEPARTURE", 3)
    metrics = evaluate(fit(train, CFG), holdout, CFG)
    assert metrics["roc_auc"] > 0.75
    assert 0 <= metrics["brier"] <= 0.25


def test_no_feature_partitions_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no feature partitions"):
        assemble_training_set(Lake(tmp_path.as_uri()), CFG, "2013-01-08")


def test_a_version_loads_back_exactly_even_after_a_day_is_fixed(tmp_path):
    lake = _lake_with_history(tmp_path)
    original = assemble_training_set(lake, CFG, "2013-01-08")
    save_training_set(lake, CFG, original)
    lake.commit_partition("datasets", CFG.name, "2013-01-03", schedule_rows(80, "2013-01-03", seed=99), {})
    assert assemble_training_set(lake, CFG, "2013-01-08").version != original.version
    again = load_training_set(lake, CFG, original.version)
    assert again.version == original.version
    pd.testing.assert_frame_equal(again.frame, original.frame)


def test_day_range_includes_both_ends_across_a_month():
    from mlplatform.dates import day_range, days_between

    assert day_range("2013-02-27", "2013-03-02") == ["2013-02-27", "2013-02-28", "2013-03-01", "2013-03-02"]
    assert day_range("2013-03-02", "2013-03-02") == ["2013-03-02"]
    assert days_between("2013-01-01", "2013-12-31") == 364


def test_each_family_logs_its_parameters_under_its_own_prefix():
    from mlplatform.training import FAMILIES, FAMILY_PARAM_PREFIXES, logged_params

    assert logged_params("logistic_regression", {"C": 0.1}) == {"family": "logistic_regression", "logreg.C": 0.1}
    assert logged_params("hist_gradient_boosting", {"learning_rate": 0.05}) == {
        "family": "hist_gradient_boosting", "hgb.learning_rate": 0.05}
    assert len(set(FAMILY_PARAM_PREFIXES.values())) == len(FAMILIES)
    logged = {family: set(logged_params(family, space)) - {"family"}
              for family, space in CFG.training.search.families.items()}
    assert len(logged) == 2 and not set.intersection(*logged.values())  # no parameter axis shared by two families


def test_holdout_metrics_have_short_names_that_sort_first(tmp_path):
    from mlplatform.registry import BEST_CV_AUC, CV_AUC, HOLDOUT_METRICS

    frame = assemble_training_set(_lake_with_history(tmp_path), CFG, "2013-01-12").frame
    train, holdout = time_split(frame, "SCHED_DEPARTURE", 3)
    metrics = evaluate(fit(train, CFG), holdout, CFG)
    assert set(HOLDOUT_METRICS) == set(metrics)  # every holdout metric has its logged name
    logged = sorted([*HOLDOUT_METRICS.values(), BEST_CV_AUC, CV_AUC, f"{CV_AUC}_fold_0"])
    assert logged[0] == "holdout.auc" and logged[:len(HOLDOUT_METRICS)] == sorted(HOLDOUT_METRICS.values())


def test_the_trainings_view_is_the_envelope_the_mlflow_ui_reads():
    import json

    from mlplatform.registry import TRAININGS_VIEW_COLUMNS, trainings_view

    envelope = json.loads(trainings_view(1700000000000))
    assert envelope["name"] and envelope["createdAt"] == envelope["updatedAt"] == 1700000000000
    state = json.loads(envelope["state"])  # the UI parses the state string again
    assert state["selectedColumns"] == list(TRAININGS_VIEW_COLUMNS)
    assert state["selectedColumns"][0] == state["columnOrder"][1] == "metrics.`holdout.auc`"
    assert set(state["columnWidths"]) <= set(state["columnOrder"])
