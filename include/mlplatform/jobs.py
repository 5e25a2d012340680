"""One function per pipeline task. DAG tasks call these with plain values and get small dicts back.

Every job is keyed on (model, ds) and rewrites exactly that key's outputs, so re-runs are safe.
The cut-off for ds is ds 00:00 (airport local time, as the source data is): a job for ds sees only
what existed before it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from mlplatform import alerts, contracts, gates, registry
from mlplatform.config import Context, ModelConfig, model_config, settings
from mlplatform.lake import Lake
from mlplatform.training import FEATURES_AREA, LABELS_AREA, day, shift
from mlplatform.warehouse import (PREDICTIONS_COLUMNS, PREDICTIONS_TABLE, Warehouse, WarehouseTableMissing,
                                  ensure_predictions_table, select_between)

log = logging.getLogger(__name__)
PREDICTIONS_AREA = "predictions"
REPORTS_AREA = "reports"
REFERENCE_AREA = "reference"
QUARANTINE_AREA = "quarantine"


def lake() -> Lake:
    return Lake(settings().lake_uri)


def _interval(ds: str) -> tuple[datetime, datetime]:
    start = datetime.combine(day(ds), datetime.min.time())
    return start, datetime.combine(day(shift(ds, 1)), datetime.min.time())


def quarantine(dataset: str, ds: str, reason: dict, batch=None) -> str:
    """Keep a rejected batch and why, so nothing is lost; it never becomes a visible partition."""
    qdir = f"{QUARANTINE_AREA}/{dataset}/{ds}"
    if batch is not None:  # text columns as strings, so a batch with mixed types still serialises
        text = {c: "string" for c in batch.columns if batch[c].dtype == object}
        lake().write_frame(f"{qdir}/batch.parquet", batch.astype(text))
    lake().write_json(f"{qdir}/reason.json", {**reason, "quarantined_at": datetime.now(timezone.utc).isoformat()})
    return lake().uri(qdir)


def _checked_batch(ds: str, table: str, contract: contracts.Contract, start: datetime, end: datetime):
    """Rows of ``table`` whose contract event-time lies in [start, end), checked against the contract.
    On a breach the batch goes to quarantine and ContractViolation is raised."""
    sql, params = select_between(table, tuple(contract.columns), contract.event_time, start, end)
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        result = wh.query(sql, params)
    except WarehouseTableMissing as exc:
        quarantine(contract.dataset, ds, {"dataset": contract.dataset, "rule": "table_exists", "column": "*",
                                          "detail": str(exc), "query": sql, "params": params})
        raise
    finally:
        wh.close()
    source = {"table": table, "query": sql, "params": params, "query_id": result.query_id}
    try:
        report = contracts.check(result.frame, contract, (start, end))
    except contracts.ContractViolation as breach:
        where = quarantine(contract.dataset, ds, {**breach.as_dict(), "source": source}, result.frame)
        raise contracts.ContractViolation(breach.dataset, breach.column, breach.rule,
                                          f"{breach.detail}; batch quarantined at {where}") from breach
    return result.frame, source, report


def _extract(area: str, model: str, ds: str, table: str, contract: contracts.Contract,
             start: datetime, end: datetime, context: Context | None = None) -> dict:
    """Copy a checked batch into the partition for ``ds``; no partition changes on a breach."""
    frame, source, report = _checked_batch(ds, table, contract, start, end)
    if frame.empty:
        report.warnings.append("no rows in the interval")
    manifest = {"source": source, "contract": report.as_dict()}
    if context is not None:
        cutoff = start  # the day's rows are scored at 00:00 of the day: nothing observed later may join
        observed, context_source, context_report = _checked_batch(
            ds, context.table, context.contract, cutoff - timedelta(hours=context.lookback_hours), cutoff)
        if observed.empty:
            context_report.warnings.append("no observations in the lookback window: context features are missing")
        frame = join_as_of(frame, observed, context)
        manifest["context"] = {"source": context_source, "contract": context_report.as_dict()}
    part = lake().commit_partition(area, model, ds, frame, {
        **manifest,
        "extracted_at": datetime.now(timezone.utc).isoformat(),
        "code_version": registry.code_version(),
    })
    return {"ds": ds, "uri": lake().partition_uri(area, model, ds), "rows": part.row_count, "content_hash": part.content_hash, "warnings": report.warnings}


def join_as_of(rows, observed, context: Context):
    """Attach, per join key, the latest observation (all observed before the cut-off by construction)."""
    latest = observed.sort_values(context.observed_at).drop_duplicates(context.join_on, keep="last")
    latest = latest.drop(columns=[c for c in latest.columns if c.endswith("_UTC")])
    renamed = latest.rename(columns={c: f"{context.prefix}{c}" for c in latest.columns if c != context.join_on})
    return rows.merge(renamed, on=context.join_on, how="left")


def ingest_features(model: str, ds: str) -> dict:
    """The day's scheduled rows (published before ds starts), with context observed before the cut-off."""
    cfg = model_config(model)
    start, end = _interval(ds)
    return _extract(FEATURES_AREA, cfg.name, ds, cfg.source.table, cfg.source.contract, start, end, cfg.context)


def ingest_labels(model: str, ds: str) -> dict:
    """Outcomes that became available during [ds-1-delay, ds-delay): all known before ds's cut-off."""
    cfg = model_config(model)
    start, end = _interval(shift(ds, -1 - cfg.labels.delay_days))
    return _extract(LABELS_AREA, cfg.name, ds, cfg.labels.table, cfg.labels.contract, start, end)


# -- training ------------------------------------------------------------------------------------
def _write_reference(cfg: ModelConfig, run_id: str, frame, model) -> str:
    from mlplatform.features import build_features
    from mlplatform.monitoring import PREDICTION_COLUMN

    sample = frame.tail(cfg.thresholds.reference_rows)
    reference = build_features(sample, cfg)
    reference[PREDICTION_COLUMN] = model.predict_proba(reference)[:, 1]
    relpath = f"{REFERENCE_AREA}/{cfg.name}/run={run_id}/reference.parquet"
    lake().write_frame(relpath, reference.reset_index(drop=True))
    return relpath


def train(model: str, cutoff_ds: str, reason: str, window_days: int | None = None) -> dict:
    """Train on data known before the cut-off, register a version, and promote it through the gate."""
    from mlplatform.features import build_features
    from mlplatform.training import assemble_training_set, fit, save_training_set, score_metrics, time_split

    cfg = model_config(model)
    dataset = assemble_training_set(lake(), cfg, cutoff_ds, window_days)
    dataset_manifest = save_training_set(lake(), cfg, dataset)
    train_rows, holdout = time_split(dataset.frame, cfg.source.event_time, cfg.training.holdout_days)
    if len(train_rows) < cfg.training.min_training_rows:
        raise ValueError(f"{model}: {len(train_rows)} training rows, fewer than {cfg.training.min_training_rows}")
    challenger = fit(train_rows, cfg)
    holdout_features = build_features(holdout, cfg)
    challenger_scores = challenger.predict_proba(holdout_features)[:, 1]
    metrics = score_metrics(holdout[cfg.target.name], challenger_scores, cfg)

    mlc = registry.client(settings().mlflow_tracking_uri)
    champion = registry.version_by_alias(mlc, cfg.name, registry.CHAMPION)
    champion_scores = None
    if champion is not None:  # both models are scored on the same holdout, which the challenger never saw
        champion_scores = registry.load_version(cfg.name, champion.version).predict_proba(holdout_features)[:, 1]
    decision = gates.decide_promotion(
        holdout[cfg.target.name].to_numpy(), challenger_scores, champion_scores,
        {col: holdout[col].astype(str).to_numpy() for col in cfg.gate.segments}, cfg.gate,
        prior_rate=float(train_rows[cfg.target.name].mean()))

    tags = {"cutoff_ds": cutoff_ds, "trigger_reason": reason, "dataset_version": dataset.version}
    dataset_info = {"version": dataset.version, "cutoff_ds": cutoff_ds, "manifest": lake().uri(dataset_manifest),
                    "feature_partitions": dataset.feature_partitions, "label_partitions": dataset.label_partitions}
    params = {**cfg.training.params, "train_rows": len(train_rows), "holdout_rows": len(holdout),
              "holdout_start": str(holdout[cfg.source.event_time].min())}
    run_id, version = registry.log_training_run(
        cfg, challenger, train_rows, build_features(train_rows.head(50), cfg), metrics, params, tags, dataset_info,
        {"training_set.json": dataset_info, "promotion_decision.json": decision.as_dict()},
    )
    reference = _write_reference(cfg, run_id, train_rows, challenger)
    evidence = {"reference_path": reference, "promotion_decision": decision.reason,
                "gate_promote": str(decision.promote).lower(),
                "gate_auc_gain": f"{decision.auc_gain:.4f}",
                "gate_auc_gain_ci95": f"[{decision.ci_low:.4f}, {decision.ci_high:.4f}]",
                "gate_compared_with": f"v{champion.version}" if champion else "prior-rate baseline"}
    for key, value in {**tags, **evidence}.items():
        mlc.set_model_version_tag(cfg.name, version, key, value)
    mlc.update_model_version(cfg.name, version, description=f"Gate: {decision.reason}. Evidence: "
                             f"promotion_decision.json in run {run_id}.")
    registry.set_alias(mlc, cfg.name, registry.CHALLENGER, version)
    if decision.promote:
        registry.set_alias(mlc, cfg.name, registry.CHAMPION, version)
    alerts.send("promotion" if decision.promote else "rejection",
                f"{':trophy: Promoted' if decision.promote else ':no_entry: Rejected'} {cfg.name} v{version} "
                f"(trained to {cutoff_ds}, reason {reason}): {decision.reason}. Holdout AUC "
                f"{decision.challenger_auc:.4f} vs {decision.champion_auc if decision.champion_auc is not None else 0.5:.4f}.")
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
            "uri": lake().partition_uri(PREDICTIONS_AREA, cfg.name, ds)}


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
    from mlplatform.monitoring import drift_report

    cfg = model_config(model)
    part = lake().partition(PREDICTIONS_AREA, cfg.name, ds)
    if part is None:
        raise FileNotFoundError(f"{model}: no committed predictions for {ds}")
    current = lake().read_partition(part)
    mlc = registry.client(settings().mlflow_tracking_uri)
    scored_by = mlc.get_model_version(cfg.name, part.manifest["model_version"])
    reference = lake().read_frame(scored_by.tags["reference_path"])

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
