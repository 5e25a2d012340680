import pandas as pd
import pytest

from mlplatform.config import model_config
from mlplatform.features import MISSING_CATEGORY, build_features, build_target
from tests.unit.helpers import schedule_rows

CFG = model_config("flight_delay")


def test_features_follow_config_and_never_use_outcomes():
    feats = build_features(schedule_rows(), CFG)
    assert list(feats.columns) == CFG.feature_names
    leaky = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}
    assert not leaky & {f.column.lower() for f in CFG.features}


def test_hhmm_becomes_fractional_hours():
    raw = schedule_rows(3)
    raw["SCHED_DEP_TIME"] = [530, 1545, 2359]
    assert build_features(raw, CFG)["sched_dep_hour"].round(3).tolist() == [5.5, 15.75, 23.983]


def test_missing_category_is_explicit():
    raw = schedule_rows(4)
    raw.loc[0, "CARRIER"] = None
    assert build_features(raw, CFG)["carrier"].iloc[0] == MISSING_CATEGORY


def test_missing_source_column_is_a_clear_error():
    with pytest.raises(KeyError, match="DISTANCE"):
        build_features(schedule_rows().drop(columns=["DISTANCE"]), CFG)


def test_target_is_late_over_threshold_and_nan_when_cancelled():
    labels = pd.DataFrame({"FLIGHT_ID": [1, 2, 3, 4], "ARR_DELAY": [15.0, 16.0, -3.0, None]})
    target = build_target(labels, CFG)
    assert target.iloc[:3].tolist() == [0.0, 1.0, 0.0]
    assert pd.isna(target.iloc[3])


def test_same_rows_give_identical_features_for_training_and_scoring():
    raw = schedule_rows(60)
    training_view = build_features(raw.sample(frac=1, random_state=1).sort_index(), CFG)
    scoring_view = build_features(raw, CFG)
    pd.testing.assert_frame_equal(training_view, scoring_view)
