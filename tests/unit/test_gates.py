from mlplatform.gates import decide_drift, decide_promotion


def test_first_model_must_beat_prior_rate_baseline():
    assert decide_promotion(0.64, None, 0.0).promote
    assert not decide_promotion(0.49, None, 0.0).promote


def test_challenger_must_beat_champion_by_more_than_min_gain():
    assert decide_promotion(0.70, 0.65, 0.01).promote
    assert not decide_promotion(0.655, 0.65, 0.01).promote
    assert not decide_promotion(0.60, 0.65, 0.0).promote


def test_drift_decision_at_threshold():
    assert decide_drift(0.5, 0.5).retrain
    assert not decide_drift(0.49, 0.5).retrain
    assert "below" in decide_drift(0.1, 0.5).reason
