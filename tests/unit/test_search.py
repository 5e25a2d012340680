from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlplatform.config import Search, model_config
from mlplatform.search import day_folds, draw_candidates, run_search
from tests.unit.helpers import schedule_rows

CFG = model_config("flight_delay")
SMALL_GRID = Search(budget=4, cv_folds=3, families={"hist_gradient_boosting": {"max_iter": [20, 40], "max_leaf_nodes": [7]},
                                                    "logistic_regression": {"C": [0.1, 1.0]}})
SMALL = replace(CFG, training=replace(CFG.training, search=SMALL_GRID))


def labelled_days(days: int = 8, rows: int = 150) -> pd.DataFrame:
    frames = [schedule_rows(rows, f"2013-01-{d:02d}", seed=d) for d in range(1, days + 1)]
    frame = pd.concat(frames, ignore_index=True)
    late = (frame["SCHED_DEP_TIME"] > 1600) ^ (np.random.default_rng(0).random(len(frame)) < 0.15)
    frame["is_late"] = late.astype(int)
    return frame


def test_budget_is_shared_across_families_without_repeats():
    search = Search(budget=5, families={"hist_gradient_boosting": {"max_iter": [50, 100], "learning_rate": [0.1, 0.2]},
                                        "logistic_regression": {"C": [0.1, 1.0, 10.0]}})
    drawn = draw_candidates(search, 5)
    families = [c.family for c in drawn]
    assert families.count("hist_gradient_boosting") == 3 and families.count("logistic_regression") == 2
    assert len({c.label for c in drawn}) == 5
    assert len(draw_candidates(replace(search, families={"logistic_regression": {"C": [1.0]}}), 4)) == 1, \
        "never more candidates than the grid holds"


def test_folds_expand_over_whole_days_and_never_look_back():
    frame = labelled_days(8)
    days = pd.to_datetime(frame["SCHED_DEPARTURE"]).dt.normalize()
    folds = day_folds(frame, "SCHED_DEPARTURE", 3)
    assert len(folds) == 3
    train_sizes = [len(t) for t, _ in folds]
    assert train_sizes == sorted(train_sizes) and train_sizes[0] < train_sizes[-1]
    for train_rows, valid_rows in folds:
        assert days[train_rows].max() < days[valid_rows].min()
        assert set(days[train_rows]).isdisjoint(set(days[valid_rows]))
    with pytest.raises(ValueError, match="days"):
        day_folds(labelled_days(3), "SCHED_DEPARTURE", 3)


def test_search_ranks_candidates_of_both_families_by_cv_auc():
    frame = labelled_days(8)
    ranked = run_search(frame, SMALL, budget=4)
    assert {c.family for c in ranked} == {"hist_gradient_boosting", "logistic_regression"}
    means = [c.mean_auc for c in ranked]
    assert means == sorted(means, reverse=True)
    assert len(ranked) == 4 and all(len(c.fold_auc) == 3 for c in ranked)
    assert ranked[0].mean_auc > 0.6, "the signal in the departure hour is learnable"


def test_zero_budget_uses_the_configured_default():
    (only,) = run_search(labelled_days(4), CFG, budget=0)
    assert (only.family, only.params, only.fold_auc) == (CFG.training.family, CFG.training.params, ())
