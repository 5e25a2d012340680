"""Pure decision functions: promote a challenger? retrain on drift?"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_auc: float
    champion_auc: float | None
    baseline_auc: float

    def as_dict(self) -> dict:
        return asdict(self)


def decide_promotion(challenger_auc: float, champion_auc: float | None, min_gain: float,
                     baseline_auc: float = 0.5) -> PromotionDecision:
    """Both AUCs must come from the same holdout. With no champion, the challenger must beat
    the prior-rate baseline (a constant score has AUC 0.5)."""
    if champion_auc is None:
        ok = challenger_auc > baseline_auc + min_gain
        why = "no champion; challenger beats the prior-rate baseline" if ok else "no champion; challenger does not beat the prior-rate baseline"
    else:
        ok = challenger_auc > champion_auc + min_gain
        why = (f"challenger AUC {challenger_auc:.4f} {'beats' if ok else 'does not beat'} "
               f"champion AUC {champion_auc:.4f} by more than {min_gain}")
    return PromotionDecision(ok, why, challenger_auc, champion_auc, baseline_auc)


@dataclass(frozen=True)
class DriftDecision:
    retrain: bool
    drift_share: float
    threshold: float
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def decide_drift(drift_share: float, threshold: float) -> DriftDecision:
    retrain = drift_share >= threshold
    verb = "reaches" if retrain else "is below"
    return DriftDecision(retrain, drift_share, threshold, f"drifted share {drift_share:.2f} {verb} threshold {threshold:.2f}")
