"""One function per pipeline task. DAG tasks call these with plain values and get small dicts back.

Every job is keyed on (model, ds) and rewrites exactly that key's outputs, so re-runs are safe.
The cut-off for ds is ds 00:00 (airport local time, as the source data is): a job for ds sees only
what existed before it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from mlplatform import alerts, contracts, gates, registry
from mlplatform.config import ModelConfig, model_config, settings
from mlplatform.lake import Lake
from mlplatform.training import FEATURES_AREA, LABELS_AREA, day, shift
from mlplatform.warehouse import (PREDICTIONS_COLUMNS, PREDICTIONS_TABLE, Warehouse,
                                  ensure_predictions_table, select_between)

log = logging.getLogger(__name__)
PREDICTIONS_AREA = "predictions"
REPORTS_AREA = "reports"
REFERENCE_AREA = "reference"


def lake() -> Lake:
    return Lake(settings().lake_uri)


def _interval(ds: str) -> tuple[datetime, datetime]:
    start = datetime.combine(day(ds), datetime.min.time())
    return start, datetime.combine(day(shift(ds, 1)), datetime.min.time())


def _extract(cfg: ModelConfig, area: str, ds: str, table: str, columns, time_column: str, key: str,
             start: datetime, end: datetime, min_rows: int = 1) -> dict:
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        sql, params = select_between(table, columns, time_column, start, end)
        result = wh.query(sql, params)
    finally:
        wh.close()
    contract = contracts.Contract(f"{area}/{cfg.name}", tuple(columns), key, min_rows=min_rows)
    warnings = contracts.check(result.frame, contract)
    if result.frame.empty:
        warnings.append("no rows in the interval")
    part = lake().commit_partition(area, cfg.name, ds, result.frame, {
        "source": {"table": table, "query": sql, "params": params, "query_id": result.query_id},
        "extracted_at": datetime.now(timezone.utc).isoformat(),
        "code_version": registry.code_version(),
        "warnings": warnings,
    })
    return {"ds": ds, "uri": lake().uri(lake().partition_dir(area, cfg.name, ds)),
            "rows": part.row_count, "content_hash": part.content_hash}


def ingest_features(model: str, ds: str) -> dict:
    """The day's scheduled rows: everything scheduled in [ds, ds+1) is known before ds starts."""
    cfg = model_config(model)
    start, end = _interval(ds)
    src = cfg.source
    return _extract(cfg, FEATURES_AREA, ds, src.table, src.columns, src.event_time, src.key, start, end)


def ingest_labels(model: str, ds: str) -> dict:
    """Outcomes that became available during the day before the cut-off: [ds-1, ds)."""
    cfg = model_config(model)
    start, end = _interval(shift(ds, -1))
    lab = cfg.labels
    # A day on which no outcome became available is legitimate (e.g. the first day of history).
    return _extract(cfg, LABELS_AREA, ds, lab.table, lab.columns, lab.available_at, lab.key, start, end, min_rows=0)


# -- training ------------------------------------------------------------------------------------
def _write_reference(cfg: ModelConfig, run_id: str, frame, model) -> str:
    from mlplatform.features import build_features
    from mlplatform.monitoring import PREDICTION_COLUMN

    sample = frame.tail(cfg.thresholds.reference_rows)
    reference = build_features(sample, cfg)
    reference[PREDICTION_COLUMN] = model.predict_proba(reference)[:, 1]
    relpath = f"{REFERENCE_AREA}/{cfg.name}/run={run_id}/reference.parquet"
    from mlplatform.lake import frame_to_parquet

    lake().write_bytes(relpath, frame_to_parquet(reference.reset_index(drop=True)))
    return relpath


def train(model: str, cutoff_ds: str, reason: str, window_days: int | None = None) -> dict:
    """Train on data known before the cut-off, register a version, and promote it through the gate."""
    from mlplatform.features import build_features
    from mlplatform.training import assemble_training_set, evaluate, fit, time_split

    cfg = model_config(model)
    dataset = assemble_training_set(lake(), cfg, cutoff_ds, window_days)
    train_rows, holdout = time_split(dataset.frame, cfg.source.event_time, cfg.training.holdout_days)
    if len(train_rows) < cfg.training.min_training_rows:
        raise ValueError(f"{model}: {len(train_rows)} training rows, fewer than {cfg.training.min_training_rows}")
    challenger = fit(train_rows, cfg)
    metrics = evaluate(challenger, holdout, cfg)

    mlc = registry.client(settings().mlflow_tracking_uri)
    champion = registry.version_by_alias(mlc, cfg.name, registry.CHAMPION)
    champion_auc = None
    if champion is not None:
        champion_auc = evaluate(registry.load_version(cfg.name, champion.version), holdout, cfg)["roc_auc"]
    decision = gates.decide_promotion(metrics["roc_auc"], champion_auc, cfg.thresholds.min_auc_gain)

    tags = {"cutoff_ds": cutoff_ds, "trigger_reason": reason, "dataset_version": dataset.version}
    dataset_info = {"version": dataset.version, "cutoff_ds": cutoff_ds,
                    "feature_partitions": dataset.feature_partitions, "label_partitions": dataset.label_partitions}
    params = {**cfg.training.params, "train_rows": len(train_rows), "holdout_rows": len(holdout),
              "holdout_start": str(holdout[cfg.source.event_time].min())}
    run_id, version = registry.log_training_run(
        cfg, challenger, train_rows, build_features(train_rows.head(50), cfg), metrics, params, tags, dataset_info,
        {"training_set.json": dataset_info, "promotion_decision.json": decision.as_dict()},
    )
    reference = _write_reference(cfg, run_id, train_rows, challenger)
    for key, value in {**tags, "reference_path": reference}.items():
        mlc.set_model_version_tag(cfg.name, version, key, value)
    mlc.set_model_version_tag(cfg.name, version, "promotion_decision", decision.reason)
    registry.set_alias(mlc, cfg.name, registry.CHALLENGER, version)
    if decision.promote:
        registry.set_alias(mlc, cfg.name, registry.CHAMPION, version)
    alerts.send("promotion" if decision.promote else "rejection",
                f"{':trophy: Promoted' if decision.promote else ':no_entry: Rejected'} {cfg.name} v{version} "
                f"(trained to {cutoff_ds}, reason {reason}): {decision.reason}")
    return {"run_id": run_id, "version": version, "promoted": decision.promote,
            "holdout_auc": metrics["roc_auc"], "dataset_version": dataset.version}


# -- scoring -------------------------------------------------------------------------------------
def score(model: str, ds: str) -> dict | None:
    """Score the day's partition with the version the champion alias points at right now."""
    from mlplatform.features import build_features
    from mlplatform.monitoring import PREDICTION_COLUMN

    cfg = model_config(model)
    mlc = registry.client(settings().mlflow_tracking_uri)
    champion = registry.version_by_alias(mlc, cfg.name, registry.CHAMPION)
    if champion is None:
        log.warning("%s has no champion yet; nothing to score for %s", model, ds)
        return None
    part = lake().partition(FEATURES_AREA, cfg.name, ds)
    if part is None:
        raise FileNotFoundError(f"{model}: no committed feature partition for {ds}")
    raw = lake().read_partition(part)
    features = build_features(raw, cfg)
    scores = registry.load_version(cfg.name, champion.version).predict_proba(features)[:, 1]

    out = raw[list(cfg.entity_columns)].copy()
    out[features.columns] = features
    out[PREDICTION_COLUMN] = scores
    out["predicted_label"] = (scores >= cfg.thresholds.decision_threshold).astype("int64")
    out["model_name"], out["model_version"] = cfg.name, str(champion.version)
    out["mlflow_run_id"], out["input_partition_hash"] = champion.run_id, part.content_hash
    committed = lake().commit_partition(PREDICTIONS_AREA, cfg.name, ds, out, {
        "model_version": str(champion.version), "mlflow_run_id": champion.run_id,
        "input_partition": {"ds": ds, "content_hash": part.content_hash},
        "code_version": registry.code_version(),
    })
    _publish_predictions(cfg, ds, out)
    return {"ds": ds, "rows": committed.row_count, "model_version": str(champion.version),
            "uri": lake().uri(lake().partition_dir(PREDICTIONS_AREA, cfg.name, ds))}


def _publish_predictions(cfg: ModelConfig, ds: str, out) -> None:
    rows = list(zip(out["model_name"], out["model_version"], out["mlflow_run_id"], [ds] * len(out),
                    out[cfg.source.key].astype(str), out["score"].astype(float), out["predicted_label"].astype(int),
                    out["input_partition_hash"]))
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        ensure_predictions_table(wh)
        wh.replace_rows(PREDICTIONS_TABLE, {"MODEL_NAME": cfg.name, "DS": ds}, PREDICTIONS_COLUMNS, rows)
    finally:
        wh.close()


# -- monitoring ----------------------------------------------------------------------------------
def monitor(model: str, ds: str) -> dict:
    """Drift and data-quality report for the day's predictions against the champion's reference."""
    import io

    import pandas as pd

    from mlplatform.monitoring import drift_report

    cfg = model_config(model)
    part = lake().partition(PREDICTIONS_AREA, cfg.name, ds)
    if part is None:
        raise FileNotFoundError(f"{model}: no committed predictions for {ds}")
    current = lake().read_partition(part)
    mlc = registry.client(settings().mlflow_tracking_uri)
    scored_by = mlc.get_model_version(cfg.name, part.manifest["model_version"])
    reference = pd.read_parquet(io.BytesIO(lake().read_bytes(scored_by.tags["reference_path"])))

    result = drift_report(reference, current, cfg)
    decision = gates.decide_drift(result.drift_share, cfg.thresholds.drift_share)
    report_dir = f"{REPORTS_AREA}/{cfg.name}/ds={ds}"
    summary = {
        "model": cfg.name, "ds": ds, "model_version": scored_by.version, "rows": len(current),
        "drift_share": result.drift_share, "decision": decision.as_dict(),
        "columns": [c.__dict__ for c in result.columns],
    }
    lake().write_bytes(f"{report_dir}/drift_report.html", result.html.encode())
    lake().write_json(f"{report_dir}/evidently.json", result.metrics)
    lake().write_json(f"{report_dir}/summary.json", summary)
    return {"ds": ds, "retrain": decision.retrain, "drift_share": result.drift_share,
            "reason": decision.reason, "report_uri": lake().uri(f"{report_dir}/drift_report.html"),
            "top_drifted": [(c.column, round(c.score, 4)) for c in result.top_drifted()]}


def alert_drift(model: str, outcome: dict) -> str:
    top = ", ".join(f"{col} ({score})" for col, score in outcome["top_drifted"]) or "none"
    return alerts.send("drift", f":warning: Drift on {model} for {outcome['ds']}: {outcome['reason']}. "
                                f"Top drifted: {top}. Retraining requested. Report: {outcome['report_uri']}")
