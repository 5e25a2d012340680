"""One function per pipeline task. DAG tasks call these with plain values and get small dicts back.

Every job is keyed on (model, ds) and rewrites exactly that key's outputs, so re-runs are safe.
The cut-off for ds is ds 00:00 (airport local time, as the source data is): a job for ds sees only
what existed before it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime, timedelta, timezone

from mlplatform import alerts, contracts, drift_policy, gates, promotion, registry
from mlplatform.config import Context, ModelConfig, model_config, settings
from mlplatform.lake import Lake
from mlplatform.scoring import PREDICTIONS_AREA
from mlplatform.training import FEATURES_AREA, LABELS_AREA, day, shift
from mlplatform.warehouse import (PREDICTIONS_COLUMNS, PREDICTIONS_TABLE, Warehouse, WarehouseTableMissing,
                                  ensure_predictions_table, select_between)

log = logging.getLogger(__name__)
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
    """Drift reference: the most recent training rows, with the model's scores."""
    from mlplatform.features import build_features
    from mlplatform.monitoring import PREDICTION_COLUMN

    sample = frame.tail(cfg.thresholds.reference_rows)
    reference = build_features(sample, cfg)
    reference[PREDICTION_COLUMN] = model.predict_proba(reference)[:, 1]
    relpath = f"{REFERENCE_AREA}/{cfg.name}/run={run_id}/reference.parquet"
    lake().write_frame(relpath, reference.reset_index(drop=True))
    return relpath


def _write_validation(cfg: ModelConfig, run_id: str, holdout, scores) -> str:
    """Performance reference: the holdout's outcomes and the model's scores on it."""
    from mlplatform.monitoring import PREDICTION_COLUMN

    validation = holdout[[cfg.source.key, cfg.target.name]].reset_index(drop=True)
    validation[PREDICTION_COLUMN] = scores
    relpath = f"{REFERENCE_AREA}/{cfg.name}/run={run_id}/validation.parquet"
    lake().write_frame(relpath, validation)
    return relpath


def train_challenger(model: str, cutoff_ds: str, reason: str, window_days: int | None = None,
                     search_budget: int | None = None, logical_date: str | None = None) -> dict:
    """Search and train on data known before the cut-off, register the best as ``challenger``, and
    judge it against the champion on the same most recent holdout. Promotion is a separate step."""
    from mlplatform.features import build_features
    from mlplatform.search import run_search
    from mlplatform.training import assemble_training_set, fit, save_training_set, score_metrics, time_split

    cfg = model_config(model)
    dataset = assemble_training_set(lake(), cfg, cutoff_ds, window_days)
    dataset_manifest = save_training_set(lake(), cfg, dataset)
    train_rows, holdout = time_split(dataset.frame, cfg.source.event_time, cfg.training.holdout_days)
    if len(train_rows) < cfg.training.min_training_rows:
        raise ValueError(f"{model}: {len(train_rows)} training rows, fewer than {cfg.training.min_training_rows}")
    budget = cfg.training.search.budget if search_budget is None else search_budget
    candidates = run_search(train_rows, cfg, budget)
    best = candidates[0]
    challenger = fit(train_rows, cfg, best.family, best.params)
    holdout_features = build_features(holdout, cfg)
    challenger_scores = challenger.predict_proba(holdout_features)[:, 1]
    metrics = score_metrics(holdout[cfg.target.name], challenger_scores, cfg)

    mlc = registry.client(settings().mlflow_tracking_uri)
    seen = promotion.snapshot(lake(), mlc, cfg.name)
    champion_scores = None
    if seen.champion is not None:  # both models are scored on the same holdout, which the challenger never saw
        champion_scores = registry.load_version(cfg.name, seen.champion).predict_proba(holdout_features)[:, 1]
    decision = gates.decide_promotion(
        holdout[cfg.target.name].to_numpy(), challenger_scores, champion_scores,
        {col: holdout[col].astype(str).to_numpy() for col in cfg.gate.segments}, cfg.gate,
        prior_rate=float(train_rows[cfg.target.name].mean()))

    tags = {"cutoff_ds": cutoff_ds, "trigger_reason": reason, "dataset_version": dataset.version,
            "logical_date": logical_date or cutoff_ds}
    dataset_info = {"version": dataset.version, "cutoff_ds": cutoff_ds, "manifest": lake().uri(dataset_manifest),
                    "feature_partitions": dataset.feature_partitions, "label_partitions": dataset.label_partitions}
    params = {"family": best.family, **best.params, "search_budget": budget, "candidates": len(candidates),
              "train_rows": len(train_rows), "holdout_rows": len(holdout),
              "holdout_start": str(holdout[cfg.source.event_time].min()),
              "decision_threshold": cfg.thresholds.decision_threshold}
    run_id, version = registry.log_training_run(
        cfg, challenger, train_rows, build_features(train_rows.head(50), cfg), metrics, params, tags, dataset_info,
        {"training_set.json": dataset_info, "promotion_decision.json": decision.as_dict()}, candidates)
    reference = _write_reference(cfg, run_id, train_rows, challenger)
    validation = _write_validation(cfg, run_id, holdout, challenger_scores)
    evidence = {"reference_path": reference, "validation_path": validation, "holdout_auc": f"{metrics['roc_auc']:.6f}",
                "promotion_decision": decision.reason, "gate_promote": str(decision.promote).lower(),
                "gate_auc_gain": f"{decision.auc_gain:.4f}",
                "gate_auc_gain_ci95": f"[{decision.ci_low:.4f}, {decision.ci_high:.4f}]",
                "gate_compared_with": f"v{seen.champion}" if seen.champion else "prior-rate baseline"}
    for key, value in {**tags, **evidence}.items():
        mlc.set_model_version_tag(cfg.name, version, key, value)
    mlc.update_model_version(cfg.name, version, description=f"Gate: {decision.reason}. Evidence: "
                             f"promotion_decision.json in run {run_id}.")
    registry.set_alias(mlc, cfg.name, registry.CHALLENGER, version)
    return {"run_id": run_id, "version": version, "cutoff_ds": cutoff_ds, "reason": reason,
            "gate": {"promote": decision.promote, "reason": decision.reason, "auc_gain": decision.auc_gain,
                     "ci95": [decision.ci_low, decision.ci_high], "challenger_auc": decision.challenger_auc,
                     "champion_auc": decision.champion_auc, "holdout_rows": decision.holdout_rows},
            "seen": asdict(seen), "holdout_auc": metrics["roc_auc"], "dataset_version": dataset.version,
            "family": best.family}


def promote(model: str, outcome: dict, force: bool, actor: str) -> dict:
    """Move ``champion`` to the challenger if the gate passed (or a person forced it), through the
    promotion log's compare-and-set. A refused or stale challenger leaves the champion untouched."""
    cfg = model_config(model)
    gate, version = outcome["gate"], outcome["version"]
    if not (gate["promote"] or force):
        alerts.gate_alert(cfg.name, version, outcome, promoted=False, action="reject", actor=actor,
                          from_version=outcome["seen"]["champion"])
        return {"promoted": False, "version": version, "reason": gate["reason"]}
    action = "promote" if gate["promote"] else "manual_promote"
    why = gate["reason"] if gate["promote"] else f"forced by {actor} although the gate refused: {gate['reason']}"
    mlc = registry.client(settings().mlflow_tracking_uri)
    seen = promotion.Snapshot(**outcome["seen"])
    done = promotion.logged_move(lake(), mlc, cfg.name, seen, version, outcome["run_id"])
    if done is not None:  # a re-run of this task: the move is in the log already
        return {"promoted": True, "version": version, "from_version": done.from_version, "seq": done.seq,
                "action": done.action}
    entry = promotion.move_champion(lake(), mlc, cfg.name, version, seen, action, actor, why,
                                    evidence={**gate, "run_id": outcome["run_id"], "cutoff_ds": outcome["cutoff_ds"],
                                              "trigger_reason": outcome["reason"]})
    mlc.set_model_version_tag(cfg.name, version, "promoted_by", f"{action}:{actor}")
    alerts.gate_alert(cfg.name, version, outcome, promoted=True, action=action, actor=actor,
                      from_version=entry.from_version)
    return {"promoted": True, "version": version, "from_version": entry.from_version, "seq": entry.seq,
            "action": action}


def rollback(model: str, target: str, actor: str, reason: str) -> dict:
    """Point ``champion`` back at ``target`` (a version number, or "previous" per the promotion log)."""
    cfg = model_config(model)
    mlc = registry.client(settings().mlflow_tracking_uri)
    seen = promotion.snapshot(lake(), mlc, cfg.name)
    version = promotion.previous_champion(lake(), cfg.name, seen.champion) if target == "previous" else str(target)
    mlc.get_model_version(cfg.name, version)  # fails loudly on a version that does not exist
    if version == seen.champion:
        raise ValueError(f"{model}: v{version} is already the champion")
    entry = promotion.move_champion(lake(), mlc, cfg.name, version, seen, "rollback", actor, reason)
    alerts.rollback_alert(cfg.name, entry.from_version, version, actor, reason)
    return asdict(entry)


# -- scoring -------------------------------------------------------------------------------------
def score(model: str, ds: str) -> dict | None:
    """Score the day's partition, chunk by chunk, with the version the champion alias points at now."""
    from mlplatform.scoring import score_partition

    cfg = model_config(model)
    mlc = registry.client(settings().mlflow_tracking_uri)
    champion = registry.version_by_alias(mlc, cfg.name, registry.CHAMPION)
    if champion is None:
        log.warning("%s has no champion yet; nothing to score for %s", model, ds)
        return None
    part = lake().partition(FEATURES_AREA, cfg.name, ds)
    if part is None:
        raise FileNotFoundError(f"{model}: no committed feature partition for {ds}")
    loaded = registry.load_version(cfg.name, champion.version)
    committed = score_partition(lake(), cfg, part, loaded, str(champion.version), champion.run_id)
    _publish_predictions(cfg, committed)
    log.info("%s %s scored by champion v%s (run %s)", model, ds, champion.version, champion.run_id)
    return {"ds": ds, "rows": committed.row_count, "model_version": str(champion.version),
            "uri": lake().partition_uri(PREDICTIONS_AREA, cfg.name, ds)}


def _publish_predictions(cfg: ModelConfig, predictions) -> int:
    """Copy a committed predictions partition to the warehouse table, chunk by chunk."""
    def row_batches():
        for out in lake().iter_partition_batches(predictions):
            yield list(zip(out["model_name"], out["model_version"], out["mlflow_run_id"], [predictions.ds] * len(out),
                           out[cfg.source.key].astype(str), out["score"].astype(float),
                           out["predicted_label"].astype(int), out["input_partition_hash"]))

    wh = Warehouse(settings().warehouse_conn_id)
    try:
        ensure_predictions_table(wh)
        return wh.replace_rows(PREDICTIONS_TABLE, {"MODEL_NAME": cfg.name, "DS": predictions.ds},
                               PREDICTIONS_COLUMNS, row_batches())
    finally:
        wh.close()


# -- monitoring ---------------------------------------------------------------------------------
def monitor(model: str, ds: str) -> dict:
    """The day's drift and data-quality report against the champion's reference; the realized
    performance of the most recent fully labelled day; then the retraining policy's decision."""
    from mlplatform.monitoring import drift_report

    cfg = model_config(model)
    current, scored_by = _scored_day(cfg, ds)
    if current is None:
        raise FileNotFoundError(f"{model}: no committed predictions for {ds}")
    reference = lake().read_frame(scored_by.tags["reference_path"])
    result = drift_report(reference, current, cfg)
    labelled_day = evaluate_labelled_day(cfg, ds)
    today = drift_policy.DayObservation(ds=ds, rows=len(current), columns=result.verdicts())
    history = _recent_observations(cfg, ds) + [today]
    validation_auc = scored_by.tags.get("holdout_auc")
    decision = drift_policy.decide(history, cfg.drift_policy, scored_by.tags.get("cutoff_ds"),
                                   float(validation_auc) if validation_auc else None, _last_training_ds(cfg, ds))
    report_dir = f"{REPORTS_AREA}/{cfg.name}/ds={ds}"
    summary = {
        "model": cfg.name, "ds": ds, "model_version": scored_by.version, "rows": len(current),
        "drift_share": result.drift_share, "observation": asdict(today), "decision": decision.as_dict(),
        "columns": [asdict(c) for c in result.columns], "labelled_day": labelled_day,
    }
    previous = _read_summary(cfg, ds) or {}
    if "performance" in previous:  # written when this day's labels arrived; a re-run keeps it
        summary["performance"] = previous["performance"]
        summary["observation"] = {**summary["observation"], **_realized(previous["performance"])}
    lake().write_bytes(f"{report_dir}/drift_report.html", result.html.encode())
    lake().write_json(f"{report_dir}/evidently.json", result.metrics)
    _write_evidently_run(report_dir, result.snapshot, "drift")
    lake().write_json(f"{report_dir}/summary.json", summary)
    registry.log_monitoring_run(cfg.name, ds, scored_by, _monitoring_metrics(summary),
                                {"drift_report.html": result.html, "summary.json": summary})
    return {"ds": ds, "action": decision.action, "reason": decision.reason, "message": decision.message,
            "drift_share": result.drift_share, "effective_share": decision.effective_share,
            "report_uri": lake().uri(f"{report_dir}/drift_report.html"), "labelled_day": labelled_day,
            "top_drifted": [(c.column, round(c.effect_size, 4)) for c in result.top_drifted()]}


def _scored_day(cfg: ModelConfig, ds: str):
    """The day's predictions and the model version that made them, or (None, None)."""
    part = lake().partition(PREDICTIONS_AREA, cfg.name, ds)
    if part is None:
        return None, None
    mlc = registry.client(settings().mlflow_tracking_uri)
    return lake().read_partition(part), mlc.get_model_version(cfg.name, part.manifest["model_version"])


def _last_training_ds(cfg: ModelConfig, ds: str) -> str | None:
    """The latest training cut-off before ``ds`` among all registered versions, promoted or refused. Not
    the ``challenger`` alias: a backfill re-running an old day must see the trainings that day saw."""
    mlc = registry.client(settings().mlflow_tracking_uri)
    cutoffs = [v.tags.get("cutoff_ds") for v in mlc.search_model_versions(f"name = '{cfg.name}'")]
    return max((c for c in cutoffs if c and c < ds), default=None)


def _read_summary(cfg: ModelConfig, ds: str) -> dict | None:
    path = f"{REPORTS_AREA}/{cfg.name}/ds={ds}/summary.json"
    return lake().read_json(path) if lake().exists(path) else None


def _realized(performance: dict) -> dict:
    return {"realized_auc": performance["roc_auc"], "labelled_rows": int(performance["rows"])}


def labelled_day_for(cfg: ModelConfig, ds: str) -> str:
    """The latest day whose flights have all landed by ds's cut-off: a flight of day P lands by the
    end of P+1 at the latest, and its outcome is ingested delay_days later."""
    return shift(ds, -2 - cfg.labels.delay_days)


def evaluate_labelled_day(cfg: ModelConfig, ds: str) -> str | None:
    """Once day P's labels have arrived, its realized performance against the champion's validation
    performance: an Evidently classification report, and ``performance`` in P's summary."""
    import pandas as pd

    from mlplatform.features import build_target
    from mlplatform.monitoring import PREDICTION_COLUMN, performance_report

    day_p = labelled_day_for(cfg, ds)
    predictions, scored_by = _scored_day(cfg, day_p)
    summary = _read_summary(cfg, day_p)
    if predictions is None or summary is None:
        return None
    label_parts = lake().list_partitions(LABELS_AREA, cfg.name, shift(day_p, 1), shift(ds, 1))
    if not label_parts:
        return None
    outcomes = pd.concat([lake().read_partition(p) for p in label_parts], ignore_index=True)
    outcomes = outcomes.drop_duplicates(subset=[cfg.labels.key], keep="last")
    outcomes[cfg.target.name] = build_target(outcomes, cfg)
    labelled = predictions.merge(outcomes[[cfg.labels.key, cfg.target.name]], left_on=cfg.source.key,
                                 right_on=cfg.labels.key).dropna(subset=[cfg.target.name])
    if labelled[cfg.target.name].nunique() < 2:
        log.warning("%s: %d labelled rows for %s, not both classes: no performance report", cfg.name, len(labelled), day_p)
        return None
    validation = lake().read_frame(scored_by.tags["validation_path"])
    result = performance_report(validation, labelled[[cfg.target.name, PREDICTION_COLUMN]], cfg)
    report_dir = f"{REPORTS_AREA}/{cfg.name}/ds={day_p}"
    lake().write_bytes(f"{report_dir}/performance_report.html", result.html.encode())
    lake().write_json(f"{report_dir}/performance.json", {"metrics": result.metrics, "evidently": result.evidently})
    _write_evidently_run(report_dir, result.snapshot, "performance")
    summary["performance"] = {**result.metrics, "labels_known_at": ds}
    summary["observation"] = {**summary["observation"], **_realized(result.metrics)}
    lake().write_json(f"{report_dir}/summary.json", summary)
    registry.log_monitoring_run(cfg.name, day_p, scored_by, _monitoring_metrics(summary),
                                {"performance_report.html": result.html, "summary.json": summary})
    return day_p


def _write_evidently_run(report_dir: str, snapshot, kind: str) -> None:
    """The day's Evidently run, for ``make reports-ui`` to copy into the Evidently workspace."""
    from mlplatform import evidently_workspace

    lake().write_bytes(f"{report_dir}/{evidently_workspace.RUN_FILES[kind]}", evidently_workspace.run_document(snapshot))


def _monitoring_metrics(summary: dict) -> dict[str, float]:
    decision = summary["decision"]
    metrics = {"drift_share": summary["drift_share"], "effective_drift_share": decision["effective_share"],
               "drifted_days_in_window": decision["drifted_days"], "rows": summary["rows"],
               "policy_retrain": float(decision["action"] == drift_policy.RETRAIN),
               "policy_alert": float(decision["action"] == drift_policy.ALERT)}
    for key in ("roc_auc", "log_loss", "brier", "late_rate", "predicted_late_rate", "validation_auc", "auc_drop"):
        if key in summary.get("performance", {}):
            metrics[f"realized_{key}" if not key.startswith(("validation", "auc")) else key] = summary["performance"][key]
    return metrics


def _recent_observations(cfg: ModelConfig, ds: str) -> list:
    """The policy's memory: observations recorded by the previous days' monitor runs, oldest first."""
    lookback = cfg.drift_policy.window_days + cfg.drift_policy.cooldown_days + cfg.drift_policy.performance_days
    observations = []
    for offset in range(lookback, 0, -1):
        path = f"{REPORTS_AREA}/{cfg.name}/ds={shift(ds, -offset)}/summary.json"
        if lake().exists(path):
            observations.append(drift_policy.observation_from_dict(lake().read_json(path)["observation"]))
    return observations


def alert_monitoring(model: str, outcome: dict) -> str:
    return alerts.drift_alert(model, outcome)
