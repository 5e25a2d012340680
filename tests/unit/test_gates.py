import numpy as np
import pytest

from mlplatform.gates import GatePolicy, _auc, decide_promotion

POLICY = GatePolicy(min_effect=0.0, min_holdout_rows=500, max_brier_increase=0.01, segment_min_rows=200,
                    max_segment_auc_drop=0.05, bootstrap_samples=200)


def holdout(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=1.0, size=n) > 0.8).astype(int)
    segment = np.where(rng.random(n) < 0.5, "EWR", "JFK")
    return y, signal, segment


def squash(x):
    return 1 / (1 + np.exp(-x))


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    y, signal, _ = holdout()
    assert _auc(y, signal) == pytest.approx(roc_auc_score(y, signal))


def test_clearly_better_challenger_is_promoted_with_evidence():
    y, signal, seg = holdout()
    rng = np.random.default_rng(1)
    weak = squash(signal + rng.normal(scale=2.0, size=len(y)) - 1)
    strong = squash(signal - 1)
    d = decide_promotion(y, strong, weak, {"ORIGIN": seg}, POLICY)
    assert d.promote, d.reason
    assert 0 < d.ci_low < d.auc_gain < d.ci_high
    assert {s["segment"] for s in d.segments} == {"ORIGIN=EWR", "ORIGIN=JFK"}


def test_identical_models_are_not_promoted():
    y, signal, seg = holdout()
    d = decide_promotion(y, squash(signal), squash(signal), {"ORIGIN": seg}, POLICY)
    assert not d.promote and "lower bound" in d.reason


def test_small_holdout_is_refused():
    y, signal, seg = holdout(n=300)
    d = decide_promotion(y, squash(signal - 1), None, {"ORIGIN": seg}, POLICY, prior_rate=0.3)
    assert not d.promote and "fewer than 500" in d.reason


def test_worse_calibration_is_refused_even_with_better_ranking():
    y, signal, seg = holdout()
    rng = np.random.default_rng(2)
    champion = squash(signal + rng.normal(scale=2.0, size=len(y)) - 1)
    badly_calibrated = squash(3 * signal + 3)  # better ranking, probabilities far too high
    d = decide_promotion(y, badly_calibrated, champion, {"ORIGIN": seg}, POLICY)
    assert not d.promote and "Brier" in d.reason


def test_a_large_segment_regression_is_refused():
    """Better overall and well calibrated enough, but one large origin gets worse: refused for that."""
    from dataclasses import replace

    rng = np.random.default_rng(3)
    n = 6000
    signal = rng.normal(size=n)
    y = (signal + rng.normal(size=n) > 0.8).astype(int)
    seg = rng.choice(["EWR", "JFK", "LGA"], n)
    champion = squash(signal + rng.normal(scale=1.0, size=n) - 1)
    challenger = squash(signal - 1)
    jfk = seg == "JFK"
    challenger[jfk] = squash(signal[jfk] + rng.normal(scale=2.0, size=jfk.sum()) - 1)
    d = decide_promotion(y, challenger, champion, {"ORIGIN": seg}, replace(POLICY, max_brier_increase=1.0))
    assert d.ci_low > 0, "overall the challenger is better"
    assert not d.promote and "ORIGIN=JFK" in d.reason
    (jfk_row,) = [s for s in d.segments if s["segment"] == "ORIGIN=JFK"]
    assert jfk_row["auc_change"] < -POLICY.max_segment_auc_drop


def test_without_champion_the_prior_rate_baseline_is_the_bar():
    y, signal, seg = holdout()
    first = decide_promotion(y, squash(signal - 1), None, {"ORIGIN": seg}, POLICY, prior_rate=0.25)
    assert first.promote and first.champion_auc is None and "prior-rate baseline" in first.reason
    noise = np.random.default_rng(4).random(len(y))
    assert not decide_promotion(y, noise, None, {"ORIGIN": seg}, POLICY, prior_rate=0.25).promote
    with pytest.raises(ValueError, match="prior rate"):
        decide_promotion(y, noise, None, {"ORIGIN": seg}, POLICY)

