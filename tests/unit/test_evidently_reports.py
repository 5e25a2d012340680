"""Drift reports on samples: same verdicts and tests as on all rows; effect sizes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlplatform.config import Feature, model_config
from mlplatform.evidently_reports import (DRIFT_SAMPLE_ROWS, JS_ROWS_PER_CATEGORY, PREDICTION_COLUMN, column_drifts,
                                   default_drift_method, drift_report, effect_size, sample_frame, sample_size)

CFG = replace(model_config("flight_delay"), features=(
    Feature("shifted", "shifted", "numeric"), Feature("stable", "stable", "numeric"),
    Feature("rare_sixth", "rare_sixth", "numeric"),
    Feature("mix", "mix", "categorical"), Feature("steady", "steady", "categorical"),
))
ROWS, CAP = 12_000, 3_000


def frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rare = rng.integers(0, 5, n).astype(float)
    if shift == 0:
        rare[8] = 5.0  # one row with a sixth value: Wasserstein on all rows, likely Jensen-Shannon on a sample
    return pd.DataFrame({
        "shifted": rng.normal(shift, 1, n),
        "stable": rng.gamma(2.0, 3.0, n),
        "rare_sixth": rare,
        "mix": rng.choice(list("abcd"), n, p=[0.4, 0.3, 0.2, 0.1] if shift == 0 else [0.1, 0.2, 0.3, 0.4]),
        "steady": rng.choice(["x", "y", "z", None], n, p=[0.5, 0.3, 0.15, 0.05]),
        PREDICTION_COLUMN: rng.beta(2, 5, n),
    })


@pytest.fixture(scope="module")
def reports():
    reference, current = frame(ROWS, 0.0, seed=1), frame(ROWS, 0.6, seed=2)
    return drift_report(reference, current, CFG, max_rows=None), drift_report(reference, current, CFG, max_rows=CAP)


def test_sampled_report_keeps_the_full_reports_verdicts_and_tests(reports):
    full, sampled = reports
    assert full.sample_rows is None and not full.sampled
    assert sampled.sample_rows == CAP and sampled.sampled
    assert (sampled.reference_rows, sampled.current_rows) == (ROWS, ROWS)
    verdicts = {c.column: c.drifted for c in full.columns}
    assert verdicts == {c.column: c.drifted for c in sampled.columns}
    assert verdicts == {"shifted": True, "stable": False, "rare_sixth": False, "mix": True, "steady": False,
                        PREDICTION_COLUMN: False}
    assert {c.column: c.method for c in full.columns} == {c.column: c.method for c in sampled.columns}
    for f, s in zip(full.columns, sampled.columns):
        assert s.score == pytest.approx(f.score, abs=0.05), f.column
        assert s.effect_size == pytest.approx(f.effect_size, abs=0.05), f.column
    assert sampled.metrics["metrics"] and "<html" in sampled.html.lower()
    assert sampled.snapshot is not None and full.snapshot is not None


def test_a_sample_keeps_the_test_the_full_data_gets(reports):
    """'rare_sixth' has six values on all rows (Wasserstein) but only five in the sample, where Evidently
    would pick Jensen-Shannon: the sampled report gives the full data's test."""
    full, sampled = reports
    reference = frame(ROWS, 0.0, seed=1)
    assert 5.0 not in set(sample_frame(reference, CAP, 0)["rare_sixth"])
    method = {c.column: c.method for c in sampled.columns}["rare_sixth"]
    assert method == {c.column: c.method for c in full.columns}["rare_sixth"] == "Wasserstein distance (normed)"


def test_small_frames_are_not_sampled():
    result = drift_report(frame(800, 0.0, seed=3), frame(600, 0.6, seed=4), CFG)
    assert result.sample_rows is None and result.current_rows == 600 and 600 < DRIFT_SAMPLE_ROWS
    methods = {c.column: c.method for c in result.columns}
    assert methods["shifted"] == "K-S p_value" and methods["mix"] == "chi-square p_value"
    assert {c.column: c.drifted for c in result.columns}["shifted"]


def test_sample_is_uniform_deterministic_and_without_replacement():
    data = pd.DataFrame({"i": np.arange(50_000), "j": np.arange(50_000) * 2})
    first, again, other = (sample_frame(data, 5_000, s, ["i"]) for s in (0, 0, 1))
    assert first.equals(again) and not first.equals(other)
    assert list(first.columns) == ["i"] and len(first) == 5_000 and first["i"].is_unique
    assert 20_000 < first["i"].mean() < 30_000  # uniform over positions, not a head
    assert sample_frame(data, 60_000, 0).equals(data) and sample_frame(data, None, 0).equals(data)


def test_many_categories_raise_the_sample_size():
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({"c": rng.integers(0, 100, 40_000).astype(str)})
    needed = JS_ROWS_PER_CATEGORY * 99
    assert sample_size(wide, wide, ["c"], 2_000, rows=40_000) == needed
    assert sample_size(wide, wide, ["c"], 30_000, rows=40_000) == 30_000
    assert sample_size(wide, wide, ["c"], 2_000, rows=needed) is None  # all rows: nothing to gain
    with pytest.raises(ValueError, match="must exceed"):
        drift_report(frame(2_000, 0.0, 1), frame(2_000, 0.0, 2), CFG, max_rows=1000)


@pytest.mark.parametrize("rows,values,categorical", [
    (500, 40, False), (500, 4, False), (500, 2, False), (500, 3, True), (500, 2, True),
    (5_000, 40, False), (5_000, 5, False), (5_000, 6, False), (5_000, 3, True),
])
def test_default_drift_method_is_evidentlys_choice(rows, values, categorical):
    from evidently.legacy.calculations.stattests.registry import _get_default_stattest
    from evidently.legacy.core import ColumnType

    rng = np.random.default_rng(rows + values)
    make = (lambda n: pd.Series(rng.integers(0, values, n)).astype(str)) if categorical else \
        (lambda n: pd.Series(rng.integers(0, values, n).astype(float)))
    reference, current = make(rows), make(rows)
    kind = ColumnType.Categorical if categorical else ColumnType.Numerical
    assert default_drift_method(reference, current, categorical) == _get_default_stattest(reference, current, kind).name


def test_column_drifts_reads_given_and_resolved_tests():
    def metric(method, value, threshold):
        return {"config": {"type": "evidently:metric_v2:ValueDrift", "column": method, "method": method,
                           "threshold": threshold}, "value": value}

    report = {"metrics": [metric("wasserstein", 0.12, 0.1), metric("Jensen-Shannon distance", 0.05, 0.1),
                          metric("K-S p_value", 0.01, 0.05), metric("ks", 0.2, 0.05),
                          {"config": {"type": "evidently:metric_v2:RowCount"}, "value": 3}]}
    drifts = column_drifts(report)
    assert [(d.method, d.drifted) for d in drifts] == [
        ("Wasserstein distance (normed)", True), ("Jensen-Shannon distance", False),
        ("K-S p_value", True), ("K-S p_value", False)]


# -- effect sizes -------------------------------------------------------------------------------------------
def test_effect_size_of_a_numeric_shift_is_in_reference_standard_deviations():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(10, 2, 20_000))
    assert effect_size(reference, reference + 2, categorical=False) == pytest.approx(1.0, abs=0.01)
    assert effect_size(reference, reference.copy(), categorical=False) == 0.0
    assert effect_size(pd.Series([3.0] * 5), pd.Series([3.0, 4.0]), categorical=False) == 1.0  # no spread
    assert effect_size(pd.Series([np.nan, np.nan]), reference, categorical=False) == 0.0


def test_effect_size_of_categories_is_the_base_2_jensen_shannon_distance():
    a, b = pd.Series(list("aabb")), pd.Series(list("ccdd"))
    assert effect_size(a, b, categorical=True) == pytest.approx(1.0)
    assert effect_size(a, a.sample(frac=1, random_state=0), categorical=True) == 0.0
    # p = (1/2, 1/2) against q = (1, 0): both against their mean m = (3/4, 1/4)
    kl_p, kl_q = 0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25), np.log2(1 / 0.75)
    assert effect_size(pd.Series(list("ab")), pd.Series(list("a")), categorical=True) == pytest.approx(
        np.sqrt((kl_p + kl_q) / 2), rel=1e-9)
    # whatever the dtype; missing values left out
    assert effect_size(a.astype("category"), b, categorical=True) == pytest.approx(1.0)
    assert effect_size(pd.Series([1, 1, 2]), pd.Series(["1", "2", "2", None]), categorical=True) == pytest.approx(
        effect_size(pd.Series(["1", "1", "2"]), pd.Series(["1", "2", "2"]), categorical=True))


def test_effect_size_on_a_sample_is_close_to_all_rows():
    rng = np.random.default_rng(1)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 200_000), "c": rng.choice(list("abcde"), 200_000)})
    current = pd.DataFrame({"x": rng.normal(0.3, 1.2, 200_000),
                            "c": rng.choice(list("abcde"), 200_000, p=[0.3, 0.3, 0.2, 0.1, 0.1])})
    ref_s, cur_s = sample_frame(reference, 20_000, 0), sample_frame(current, 20_000, 1)
    for column, categorical in (("x", False), ("c", True)):
        full = effect_size(reference[column], current[column], categorical)
        assert effect_size(ref_s[column], cur_s[column], categorical) == pytest.approx(full, abs=0.015)


def test_performance_report_accepts_float_labels_as_the_lake_stores_them():
    """Targets come back from build_target as 0.0/1.0; Evidently needs integer labels to see a binary task."""
    import numpy as np
    import pandas as pd

    from mlplatform.config import model_config
    from mlplatform.evidently_reports import performance_report

    rng = np.random.default_rng(0)

    def day(n):
        score = rng.random(n)
        return pd.DataFrame({"is_late": (rng.random(n) < score).astype(float), "score": score})

    result = performance_report(day(600), day(400), model_config("flight_delay"))
    assert 0.6 < result.metrics["roc_auc"] < 1 and 0.6 < result.metrics["validation_auc"] < 1
    assert result.metrics["rows"] == 400 and "ROC" in result.html


def test_effect_size_ignores_infinite_values():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0, np.inf])
    current = pd.Series([1.0, 2.0, 3.0, 4.0, -np.inf, np.nan])
    assert effect_size(reference, current, categorical=False) == 0.0
