from dataclasses import replace
from datetime import date, timedelta

import pytest

from mlplatform.drift_policy import ColumnVerdict, DayObservation, DriftPolicy, decide, effective_share, is_drifted_day

POLICY = DriftPolicy(share=0.5, min_effect_size=0.1, min_rows=200, drifted_days=3, window_days=5,
                     cooldown_days=7, max_auc_drop=0.05, performance_days=2, min_labelled_rows=100)
COLUMNS = ("distance", "carrier", "dest", "score")


def day(offset: int) -> str:
    return (date(2013, 3, 1) + timedelta(days=offset)).isoformat()


def observation(offset: int, drifted: int = 0, effect: float = 0.3, rows: int = 900, auc=None) -> DayObservation:
    columns = tuple(ColumnVerdict(c, i < drifted, effect if i < drifted else 0.01) for i, c in enumerate(COLUMNS))
    return DayObservation(day(offset), rows, columns, auc, 800 if auc is not None else 0)


def history(drift_pattern: str, start: int = 10, **kw) -> list[DayObservation]:
    """'D' is a day with all columns drifted, '.' a quiet day, oldest first."""
    return [observation(start + i, drifted=4 if c == "D" else 0, **kw) for i, c in enumerate(drift_pattern)]


CUTOFF = day(0)  # champion trained with cut-off 10 days before the first observation: no cooldown


def test_quiet_days_need_nothing():
    decision = decide(history("....."), POLICY, CUTOFF, 0.70)
    assert (decision.action, decision.reason) == ("none", "stable")


def test_one_drifted_day_alerts_but_does_not_retrain():
    decision = decide(history("....D"), POLICY, CUTOFF, 0.70)
    assert (decision.action, decision.reason, decision.drifted_days) == ("alert", "drift_unconfirmed", 1)


def test_three_of_five_drifted_days_retrain():
    decision = decide(history("D.D.D"), POLICY, CUTOFF, 0.70)
    assert (decision.action, decision.reason, decision.drifted_days, decision.judged_days) == ("retrain", "drift", 3, 5)
    assert decide(history("DD...."), POLICY, CUTOFF, 0.70).action == "none", "older drift falls out of the window"


def test_a_share_exactly_at_the_threshold_counts():
    assert is_drifted_day(observation(0, drifted=2), POLICY), "2 of 4 columns: share 0.5"
    assert not is_drifted_day(observation(0, drifted=1), POLICY)
    assert is_drifted_day(observation(0, drifted=2, effect=POLICY.min_effect_size), POLICY)


def test_small_effects_do_not_count_however_significant():
    tiny = history("DDDDD", effect=0.05)
    assert effective_share(tiny[-1], POLICY) == 0.0
    assert decide(tiny, POLICY, CUTOFF, 0.70).action == "none"


def test_days_below_min_rows_are_not_judged():
    small = history("DDDDD", rows=50)
    decision = decide(small, POLICY, CUTOFF, 0.70)
    assert (decision.action, decision.reason, decision.judged_days) == ("none", "too_few_rows", 0)


def test_cooldown_turns_a_retrain_into_an_alert():
    recent_cutoff = day(8)  # observations start at day 10
    decision = decide(history("DDD"), POLICY, recent_cutoff, 0.70)
    assert (decision.action, decision.reason) == ("alert", "cooldown")
    assert decide(history("DDD", start=15), POLICY, recent_cutoff, 0.70).action == "retrain"


def test_a_refused_training_restarts_the_cooldown():
    """The gate refused the training of day 11: the old champion stays, and the lasting drift must
    not ask for a new training every day until the cooldown after day 11 has passed."""
    days = history("DDDDD", start=10)  # days 10..14
    assert decide(days, POLICY, CUTOFF, 0.70).action == "retrain"
    refused = decide(days, POLICY, CUTOFF, 0.70, last_training_ds=day(11))
    assert (refused.action, refused.reason) == ("alert", "cooldown")
    assert day(11) in refused.message
    later = history("DDDDD", start=14)  # days 14..18: 7 days after day 11
    assert decide(later, POLICY, CUTOFF, 0.70, last_training_ds=day(11)).action == "retrain"


def test_a_training_on_the_decided_day_does_not_change_a_rerun():
    """Re-running the monitor of a day after the training it requested gives the same decision."""
    days = history("DDDDD", start=10)
    assert decide(days, POLICY, CUTOFF, 0.70, last_training_ds=days[-1].ds).action == "retrain"


def test_max_age_retrains_when_nothing_else_did():
    aged = replace(POLICY, max_age_days=21)
    quiet = history(".....", start=17)  # days 17..21; champion cut-off day 0
    assert decide(quiet, POLICY, CUTOFF, 0.70).action == "none", "off by default"
    decision = decide(quiet, aged, CUTOFF, 0.70)
    assert (decision.action, decision.reason) == ("retrain", "age") and "21 days" in decision.message
    assert decide(quiet, aged, CUTOFF, 0.70, last_training_ds=day(5)).action == "none", "a refused training counts"
    assert decide(history(".....", start=10), aged, CUTOFF, 0.70).action == "none"
    with pytest.raises(ValueError, match="cooldown"):
        replace(POLICY, max_age_days=3)


def test_days_before_the_champion_cutoff_do_not_count():
    """Drift judged against the previous champion's reference says nothing about the current one."""
    days = history("DDD..")
    assert decide(days, POLICY, CUTOFF, 0.70).action == "retrain"
    assert decide(days, POLICY, day(13), 0.70).action == "none"


def test_realized_auc_below_validation_retrains_on_performance():
    days = [observation(10 + i, auc=a) for i, a in enumerate([0.70, 0.64, 0.63])]
    decision = decide(days, POLICY, CUTOFF, 0.70)
    assert (decision.action, decision.reason) == ("retrain", "performance")
    assert decision.realized_auc == pytest.approx(0.635)
    assert decide(days, POLICY, CUTOFF, 0.68).action == "none", "a drop within max_auc_drop is tolerated"
    assert decide(days[:1], POLICY, CUTOFF, 0.70).realized_auc is None, "needs performance_days labelled days"


def test_decision_records_its_inputs():
    record = decide(history("D.D.D"), POLICY, CUTOFF, 0.70).as_dict()
    assert record["retrain"] and record["policy"]["drifted_days"] == 3 and record["validation_auc"] == 0.70


def test_policy_rejects_impossible_debounce():
    with pytest.raises(ValueError):
        DriftPolicy(drifted_days=6, window_days=5)
