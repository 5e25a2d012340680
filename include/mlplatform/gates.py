"""The promotion gate: a pure function deciding whether a challenger replaces the champion.

The promotion gate compares challenger and champion on the same holdout rows. It promotes only if
- the holdout is large enough;
- the lower bound of a paired bootstrap 95% confidence interval of the AUC gain exceeds the
  configured minimum effect;
- calibration (Brier score) is at most ``max_brier_increase`` worse;
- no segment (e.g. a carrier or origin) with at least ``segment_min_rows`` rows loses more than
  ``max_segment_auc_drop`` of AUC.
With no champion, the challenger must beat the prior-rate baseline: a constant score equal to the
training set's positive rate (AUC 0.5). The calibration and segment guardrails guard against
regressing from a champion, so they apply only when there is one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where used: config (and so DAG parsing) imports this module
    import numpy as np


@dataclass(frozen=True)
class GatePolicy:
    min_effect: float = 0.0
    min_holdout_rows: int = 1000
    max_brier_increase: float = 0.002
    segment_min_rows: int = 300
    max_segment_auc_drop: float = 0.03
    bootstrap_samples: int = 400
    seed: int = 0
    segments: tuple[str, ...] = ()  # raw columns whose large groups must not regress


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    challenger_auc: float
    champion_auc: float | None
    auc_gain: float
    ci_low: float
    ci_high: float
    challenger_brier: float
    champion_brier: float
    holdout_rows: int
    segments: list[dict] = field(default_factory=list)
    policy: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC through ranks (ties averaged), fast enough to bootstrap."""
    from scipy.stats import rankdata

    positives = y.sum()
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def paired_bootstrap_gain(y, p_new, p_old, samples: int, seed: int) -> tuple[float, float]:
    """95% interval of AUC(new) - AUC(old), resampling the same rows for both models."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(y)
    gains = []
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        gains.append(_auc(y[idx], p_new[idx]) - _auc(y[idx], p_old[idx]))
    low, high = np.nanpercentile(gains, [2.5, 97.5])
    return float(low), float(high)


def segment_table(y, p_new, p_old, segments: dict[str, "np.ndarray"], min_rows: int) -> list[dict]:
    import numpy as np

    rows = []
    for column, values in segments.items():
        for value in np.unique(values):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            new, old = _auc(y[mask], p_new[mask]), _auc(y[mask], p_old[mask])
            rows.append({"segment": f"{column}={value}", "rows": int(mask.sum()), "challenger_auc": new,
                         "champion_auc": old, "auc_change": new - old})
    return rows


def decide_promotion(y, p_challenger, p_champion, segments: dict[str, "np.ndarray"], policy: GatePolicy,
                     prior_rate: float | None = None) -> PromotionDecision:
    """``p_champion`` is None when there is no champion: a constant ``prior_rate`` (the training set's
    positive rate, never the holdout's) then stands in for it."""
    import numpy as np

    y = np.asarray(y, dtype=int)
    p_new = np.asarray(p_challenger, dtype=float)
    has_champion = p_champion is not None
    if not has_champion and prior_rate is None:
        raise ValueError("without a champion, pass the training prior rate as the baseline")
    p_old = np.asarray(p_champion, dtype=float) if has_champion else np.full(len(y), prior_rate)
    auc_new, auc_old = _auc(y, p_new), _auc(y, p_old)
    brier_new, brier_old = float(np.mean((p_new - y) ** 2)), float(np.mean((p_old - y) ** 2))
    low, high = paired_bootstrap_gain(y, p_new, p_old, policy.bootstrap_samples, policy.seed) if len(y) else (0.0, 0.0)
    table = segment_table(y, p_new, p_old, segments, policy.segment_min_rows) if has_champion else []
    regressed = [s["segment"] for s in table if s["auc_change"] < -policy.max_segment_auc_drop]
    against = "champion" if has_champion else "prior-rate baseline"

    gain = f"AUC gain over the {against} {auc_new - auc_old:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}]"
    checks = [
        (len(y) >= policy.min_holdout_rows, f"holdout has {len(y)} rows, fewer than {policy.min_holdout_rows}"),
        (low > policy.min_effect, f"{gain}: lower bound not above the minimum effect {policy.min_effect}"),
        (not has_champion or brier_new - brier_old <= policy.max_brier_increase,
         f"Brier score worse by {brier_new - brier_old:.4f} (allowed {policy.max_brier_increase})"),
        (not regressed, f"segments lose more than {policy.max_segment_auc_drop} AUC: {regressed}"),
    ]
    failed = [why for ok, why in checks if not ok]
    promote = not failed
    reason = failed[0] if failed else f"{gain}; Brier {brier_new - brier_old:+.4f}; no large segment regressed"
    return PromotionDecision(promote, reason, auc_new, auc_old if has_champion else None, auc_new - auc_old,
                             low, high, brier_new, brier_old, int(len(y)), table, asdict(policy))
