"""The retraining policy: a pure function of recent daily monitoring outcomes.

A single drifted day is noise more often than not, so the policy debounces:
- a column counts as drifted only if its test says so *and* its effect size reaches
  ``min_effect_size`` (a tiny shift is significant on a large sample, yet harmless);
- a day counts as drifted only with at least ``min_rows`` rows and a drifted share of at least
  ``share`` among the monitored columns;
- retraining on drift needs ``drifted_days`` drifted days among the last ``window_days`` judged
  days scored by the current champion (N of M);
- realized performance, once the delayed labels exist, triggers retraining on its own when the
  mean realized ROC AUC of the last ``performance_days`` labelled days falls more than
  ``max_auc_drop`` below the champion's validation AUC;
- a safety net, ``max_age_days`` (0 turns it off): with no trigger for that many days since the last
  training, retrain anyway (reason ``age``). Input drift cannot see a shift in the relation between
  features and outcome, and realized AUC is noisy from day to day;
- nothing retrains within ``cooldown_days`` of the last training's cut-off, whether the gate
  promoted it or not: the request becomes an alert instead. Anchoring on the last attempt rather
  than on the champion matters: after a refusal the champion stays, and a condition that lasts would
  otherwise ask for a new training every day.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mlplatform.dates import days_between

RETRAIN, ALERT, NOTHING = "retrain", "alert", "none"


@dataclass(frozen=True)
class DriftPolicy:
    share: float = 0.5
    min_effect_size: float = 0.1
    min_rows: int = 200
    drifted_days: int = 3
    window_days: int = 5
    cooldown_days: int = 7
    max_auc_drop: float = 0.05
    performance_days: int = 3
    min_labelled_rows: int = 200
    max_age_days: int = 0

    def __post_init__(self):
        if not 0 < self.drifted_days <= self.window_days:
            raise ValueError(f"drifted_days must be in 1..window_days, got {self.drifted_days} of {self.window_days}")
        if self.max_age_days and self.max_age_days < self.cooldown_days:
            raise ValueError(f"max_age_days ({self.max_age_days}) is shorter than cooldown_days ({self.cooldown_days})")


@dataclass(frozen=True)
class ColumnVerdict:
    column: str
    drifted: bool         # the statistical test's verdict
    effect_size: float    # normalised Wasserstein distance (numeric) or Jensen-Shannon distance (categorical)


@dataclass(frozen=True)
class DayObservation:
    """One monitored day: the champion that scored it, its drift verdicts and, later, its realized AUC."""
    ds: str
    rows: int
    columns: tuple[ColumnVerdict, ...]
    realized_auc: float | None = None
    labelled_rows: int = 0


@dataclass(frozen=True)
class PolicyDecision:
    action: str                   # retrain | alert | none
    reason: str                   # drift | performance | age | cooldown | drift_unconfirmed | stable | too_few_rows
    message: str
    effective_share: float
    drifted_days: int
    judged_days: int
    realized_auc: float | None
    validation_auc: float | None
    policy: dict = field(default_factory=dict)

    @property
    def retrain(self) -> bool:
        return self.action == RETRAIN

    def as_dict(self) -> dict:
        return {**asdict(self), "retrain": self.retrain}


def effective_share(day: DayObservation, policy: DriftPolicy) -> float:
    """Share of monitored columns whose drift is both significant and large enough to matter."""
    if not day.columns:
        return 0.0
    counted = [c for c in day.columns if c.drifted and c.effect_size >= policy.min_effect_size]
    return len(counted) / len(day.columns)


def is_drifted_day(day: DayObservation, policy: DriftPolicy) -> bool:
    return day.rows >= policy.min_rows and effective_share(day, policy) >= policy.share


def _recent_realized_auc(history: list[DayObservation], policy: DriftPolicy) -> float | None:
    labelled = [d for d in history if d.realized_auc is not None and d.labelled_rows >= policy.min_labelled_rows]
    if len(labelled) < policy.performance_days:
        return None
    recent = labelled[-policy.performance_days:]
    return sum(d.realized_auc for d in recent) / len(recent)


def decide(history: list[DayObservation], policy: DriftPolicy, champion_cutoff_ds: str | None,
           validation_auc: float | None, last_training_ds: str | None = None) -> PolicyDecision:
    """Decide for the last day of ``history`` (oldest first). Only days on or after the champion's
    training cut-off count: older days were judged against a reference that no longer applies.
    ``last_training_ds`` is the cut-off of the most recent training, promoted or refused."""
    if not history:
        raise ValueError("the policy needs at least the day being decided")
    today = history[-1]
    current = [d for d in history if champion_cutoff_ds is None or d.ds >= champion_cutoff_ds]
    judged = [d for d in current if d.rows >= policy.min_rows][-policy.window_days:]
    drifted = sum(is_drifted_day(d, policy) for d in judged)
    realized = _recent_realized_auc(current, policy)
    share = effective_share(today, policy)

    def outcome(action: str, reason: str, message: str) -> PolicyDecision:
        return PolicyDecision(action, reason, message, share, drifted, len(judged), realized, validation_auc,
                              asdict(policy))

    if last_training_ds and last_training_ds >= today.ds:
        last_training_ds = None  # today's own request, or a later run's (a backfill): a re-run decides the same
    anchor = max((d for d in (champion_cutoff_ds, last_training_ds) if d), default=None)
    in_cooldown = anchor is not None and days_between(anchor, today.ds) < policy.cooldown_days
    underperforms = realized is not None and validation_auc is not None and \
        realized < validation_auc - policy.max_auc_drop
    trigger = None
    if underperforms:
        trigger = ("performance", f"realized AUC {realized:.4f} over the last {policy.performance_days} labelled days "
                                  f"is more than {policy.max_auc_drop} below validation AUC {validation_auc:.4f}")
    elif drifted >= policy.drifted_days:
        trigger = ("drift", f"{drifted} of the last {len(judged)} judged days drifted (needs {policy.drifted_days})")
    if trigger:
        reason, message = trigger
        if in_cooldown:
            return outcome(ALERT, "cooldown", f"{message}; in cooldown after the {anchor} training")
        return outcome(RETRAIN, reason, message)
    age = days_between(anchor, today.ds) if anchor else None
    if policy.max_age_days and age is not None and age >= policy.max_age_days:
        return outcome(RETRAIN, "age", f"no retraining for {age} days (at most {policy.max_age_days}); "
                                       f"{drifted} of the last {len(judged)} judged days drifted")
    if today.rows < policy.min_rows:
        return outcome(NOTHING, "too_few_rows", f"{today.rows} rows, fewer than {policy.min_rows}: not judged")
    if is_drifted_day(today, policy):
        return outcome(ALERT, "drift_unconfirmed",
                       f"drifted share {share:.2f} today, but only {drifted} of {len(judged)} judged days drifted "
                       f"(needs {policy.drifted_days})")
    return outcome(NOTHING, "stable", f"drifted share {share:.2f} is below {policy.share:.2f}")


def observation_from_dict(raw: dict) -> DayObservation:
    return DayObservation(**{**raw, "columns": tuple(ColumnVerdict(**c) for c in raw["columns"])})
