"""The monitoring stage: a day's drift and data-quality report, the realized performance of the most
recent fully labelled day, and the retraining policy's decision.

Evidently does the reports (``mlplatform.evidently_reports``); ``drift_policy.decide`` decides. Each day's
inputs and outcome are written under ``reports/<model>/ds=<day>/``, each file by one writer: the day's
monitor writes ``summary.json`` (drift, decision), and the evaluation of the day once its labels are in
(run by a later day's monitor) writes ``performance.json``. Readers merge the two (``merged_day``), so
neither task read-modify-writes a file the other writes, and the days may be processed in any order.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from mlplatform import drift_policy, promotion, registry
from mlplatform.config import ModelConfig, model_config, settings
from mlplatform.dates import checked_ds, shift
from mlplatform.lake import LABELS_AREA, PREDICTIONS_AREA, REFERENCE_AREA, REPORTS_AREA, default_lake

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"          # written by the day's monitor
PERFORMANCE_FILE = "performance.json"  # written by the day's evaluation, once its labels are in


def monitor(model: str, ds: str) -> dict:
    """The day's drift and data-quality report against the champion's reference; the realized
    performance of the most recent fully labelled day; then the retraining policy's decision."""
    from mlplatform.evidently_reports import drift_report

    cfg, ds, lake = model_config(model), checked_ds(ds), default_lake()
    promotion.reconcile(lake, registry.client(settings().mlflow_tracking_uri), cfg.name, f"monitor of {cfg.name} {ds}")
    current, scored_by = _scored_day(cfg, ds)
    if current is None:
        raise FileNotFoundError(f"{model}: no committed predictions for {ds}")
    reference = lake.read_frame(lake.within(f"{REFERENCE_AREA}/{cfg.name}", scored_by.tags["reference_path"]))
    result = drift_report(reference, current, cfg)
    labelled_day = evaluate_labelled_day(cfg, ds)
    today = drift_policy.DayObservation(ds=ds, rows=len(current), columns=result.verdicts())
    history = _recent_observations(cfg, ds) + [today]
    validation_auc = scored_by.tags.get("holdout_auc")
    decision = drift_policy.decide(history, cfg.drift_policy, scored_by.tags.get("cutoff_ds"),
                                   float(validation_auc) if validation_auc else None, last_training_ds(cfg, ds))
    report_dir = f"{REPORTS_AREA}/{cfg.name}/ds={ds}"
    summary = {
        "model": cfg.name, "ds": ds, "model_version": scored_by.version, "rows": len(current),
        "drift_share": result.drift_share, "observation": asdict(today), "decision": decision.as_dict(),
        "columns": [asdict(c) for c in result.columns], "labelled_day": labelled_day,
    }
    lake.write_bytes(f"{report_dir}/drift_report.html", result.html.encode())
    lake.write_json(f"{report_dir}/evidently.json", result.metrics)
    _write_evidently_run(report_dir, result.snapshot, "drift")
    lake.write_json(f"{report_dir}/{SUMMARY_FILE}", summary)
    record = merged_day(summary, _read_report(cfg, ds, PERFORMANCE_FILE))
    registry.log_monitoring_run(cfg.name, ds, scored_by, _monitoring_metrics(record),
                                {"drift_report.html": result.html, SUMMARY_FILE: summary})
    return {"ds": ds, "action": decision.action, "reason": decision.reason, "message": decision.message,
            "drift_share": result.drift_share, "effective_share": decision.effective_share,
            "report_uri": lake.uri(f"{report_dir}/drift_report.html"), "labelled_day": labelled_day,
            "top_drifted": [(c.column, round(c.effect_size, 4)) for c in result.top_drifted()]}


def _scored_day(cfg: ModelConfig, ds: str):
    """The day's predictions and the model version that made them, or (None, None)."""
    lake = default_lake()
    part = lake.partition(PREDICTIONS_AREA, cfg.name, ds)
    if part is None:
        return None, None
    mlc = registry.client(settings().mlflow_tracking_uri)
    return lake.read_partition(part), mlc.get_model_version(cfg.name, part.manifest["model_version"])


def last_training_ds(cfg: ModelConfig, ds: str) -> str | None:
    """The latest training cut-off before ``ds`` among all registered versions, promoted or refused. Not
    the ``challenger`` alias: a backfill re-running an old day must see the trainings that day saw."""
    mlc = registry.client(settings().mlflow_tracking_uri)
    cutoffs = [v.tags.get("cutoff_ds") for v in mlc.search_model_versions(f"name = '{cfg.name}'")]
    return max((c for c in cutoffs if c and c < ds), default=None)


def _read_report(cfg: ModelConfig, ds: str, name: str) -> dict | None:
    lake = default_lake()
    path = f"{REPORTS_AREA}/{cfg.name}/ds={ds}/{name}"
    return lake.read_json(path) if lake.exists(path) else None


def merged_day(summary: dict | None, performance: dict | None, as_of: str | None = None) -> dict | None:
    """One monitored day as a single record: the monitor's ``summary.json`` with the realized performance
    that the evaluation wrote to ``performance.json``, under ``performance`` and in ``observation``. Either
    part may be missing (a day evaluated before its own monitor ran has only the performance). With
    ``as_of``, performance whose labels came in after that day is left out, so a decision for a day sees
    what existed at its cut-off, whatever order the days were processed in."""
    if performance is not None and as_of is not None and performance["labels_known_at"] > as_of:
        performance = None
    if performance is None:
        return summary
    record = dict(summary) if summary else {key: performance[key] for key in ("model", "ds", "model_version")}
    observation = record.get("observation") or {"ds": performance["ds"], "rows": 0, "columns": []}
    record["performance"] = {**performance["metrics"], "labels_known_at": performance["labels_known_at"]}
    record["observation"] = {**observation, **_realized(performance["metrics"])}
    return record


def _realized(performance: dict) -> dict:
    return {"realized_auc": performance["roc_auc"], "labelled_rows": int(performance["rows"])}


def read_day(cfg: ModelConfig, ds: str, as_of: str | None = None) -> dict | None:
    """``merged_day`` of the day's two files in the lake; None if neither exists."""
    return merged_day(_read_report(cfg, ds, SUMMARY_FILE), _read_report(cfg, ds, PERFORMANCE_FILE), as_of)


def labelled_day_for(cfg: ModelConfig, ds: str) -> str:
    """The latest day whose flights have all landed by ds's cut-off: a flight of day P lands by the
    end of P+1 at the latest, and its outcome is ingested delay_days later."""
    return shift(ds, -2 - cfg.labels.delay_days)


def evaluate_labelled_day(cfg: ModelConfig, ds: str) -> str | None:
    """Once day P's labels have arrived, its realized performance against the champion's validation
    performance: an Evidently classification report and ``performance.json`` in P's report directory.
    Needs only P's predictions and labels, not P's own monitor run."""
    import pandas as pd

    from mlplatform.evidently_reports import PREDICTION_COLUMN, performance_report
    from mlplatform.features import build_target

    lake = default_lake()
    day_p = labelled_day_for(cfg, ds)
    predictions, scored_by = _scored_day(cfg, day_p)
    if predictions is None:
        return None
    label_parts = lake.list_partitions(LABELS_AREA, cfg.name, shift(day_p, 1), shift(ds, 1))
    if not label_parts:
        return None
    outcomes = pd.concat([lake.read_partition(p) for p in label_parts], ignore_index=True)
    outcomes = outcomes.drop_duplicates(subset=[cfg.labels.key], keep="last")
    outcomes[cfg.target.name] = build_target(outcomes, cfg)
    labelled = predictions.merge(outcomes[[cfg.labels.key, cfg.target.name]], left_on=cfg.source.key,
                                 right_on=cfg.labels.key).dropna(subset=[cfg.target.name])
    if labelled[cfg.target.name].nunique() < 2:
        log.warning("%s: %d labelled rows for %s, not both classes: no performance report", cfg.name, len(labelled), day_p)
        return None
    validation = lake.read_frame(lake.within(f"{REFERENCE_AREA}/{cfg.name}", scored_by.tags["validation_path"]))
    result = performance_report(validation, labelled[[cfg.target.name, PREDICTION_COLUMN]], cfg)
    report_dir = f"{REPORTS_AREA}/{cfg.name}/ds={day_p}"
    performance = {"model": cfg.name, "ds": day_p, "model_version": scored_by.version, "labels_known_at": ds,
                   "metrics": result.metrics}
    lake.write_bytes(f"{report_dir}/performance_report.html", result.html.encode())
    _write_evidently_run(report_dir, result.snapshot, "performance")
    lake.write_json(f"{report_dir}/{PERFORMANCE_FILE}", {**performance, "evidently": result.evidently})
    registry.log_monitoring_run(cfg.name, day_p, scored_by, _performance_metrics(result.metrics),
                                {"performance_report.html": result.html, PERFORMANCE_FILE: performance})
    return day_p


def _write_evidently_run(report_dir: str, snapshot, kind: str) -> None:
    """The day's Evidently run, for ``make reports-ui`` to copy into the Evidently workspace."""
    from mlplatform import evidently_workspace

    default_lake().write_bytes(f"{report_dir}/{evidently_workspace.RUN_FILES[kind]}",
                               evidently_workspace.run_document(snapshot))


def _monitoring_metrics(record: dict) -> dict[str, float]:
    """MLflow metrics of a monitored day: drift and decision, and realized performance once known."""
    decision = record["decision"]
    metrics = {"drift_share": record["drift_share"], "effective_drift_share": decision["effective_share"],
               "drifted_days_in_window": decision["drifted_days"], "rows": record["rows"],
               "policy_retrain": float(decision["action"] == drift_policy.RETRAIN),
               "policy_alert": float(decision["action"] == drift_policy.ALERT)}
    return {**metrics, **_performance_metrics(record.get("performance", {}))}


def _performance_metrics(performance: dict) -> dict[str, float]:
    metrics = {}
    for key in ("roc_auc", "log_loss", "brier", "late_rate", "predicted_late_rate", "validation_auc", "auc_drop"):
        if key in performance:
            metrics[f"realized_{key}" if not key.startswith(("validation", "auc")) else key] = performance[key]
    return metrics


def _recent_observations(cfg: ModelConfig, ds: str) -> list:
    """The policy's memory, oldest first: the previous days' drift observations (their monitors' summaries)
    and the realized performance that was known at ``ds``."""
    lookback = cfg.drift_policy.window_days + cfg.drift_policy.cooldown_days + cfg.drift_policy.performance_days
    observations = []
    for offset in range(lookback, 0, -1):
        record = read_day(cfg, shift(ds, -offset), as_of=ds)
        if record is not None:
            observations.append(drift_policy.observation_from_dict(record["observation"]))
    return observations
