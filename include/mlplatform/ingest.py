"""The ingest stage: copy a day's warehouse rows into versioned lake partitions, checked first.

``ingest_features`` takes the rows scheduled on the day (published before it starts) with the
context observed before the cut-off; ``ingest_labels`` takes the outcomes that became available
during the day before. Each batch is checked against its data contract before anything is written;
a breach keeps the batch in quarantine with its reason and raises ``ContractViolation``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from mlplatform import contracts, registry
from mlplatform.config import Context, model_config, settings
from mlplatform.dates import checked_ds, day, shift
from mlplatform.lake import FEATURES_AREA, LABELS_AREA, QUARANTINE_AREA, default_lake
from mlplatform.warehouse import Warehouse, WarehouseTableMissing, select_between


def day_interval(ds: str) -> tuple[datetime, datetime]:
    """[ds 00:00, ds+1 00:00)."""
    start = datetime.combine(day(ds), datetime.min.time())
    return start, datetime.combine(day(shift(ds, 1)), datetime.min.time())


def quarantine(dataset: str, ds: str, reason: dict, batch=None) -> str:
    """Keep a rejected batch and why, so nothing is lost; it never becomes a visible partition."""
    lake = default_lake()
    qdir = f"{QUARANTINE_AREA}/{dataset}/{ds}"
    if batch is not None:  # text columns as strings, so a batch with mixed types still serialises
        text = {c: "string" for c in batch.columns if batch[c].dtype == object}
        lake.write_frame(f"{qdir}/batch.parquet", batch.astype(text))
    lake.write_json(f"{qdir}/reason.json", {**reason, "quarantined_at": datetime.now(timezone.utc).isoformat()})
    return lake.uri(qdir)


def checked_batch(ds: str, table: str, contract: contracts.Contract, start: datetime, end: datetime):
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


def extract(area: str, model: str, ds: str, table: str, contract: contracts.Contract,
            start: datetime, end: datetime, context: Context | None = None) -> dict:
    """Copy a checked batch into the partition for ``ds``; no partition changes on a breach."""
    frame, source, report = checked_batch(ds, table, contract, start, end)
    if frame.empty:
        report.warnings.append("no rows in the interval")
    manifest = {"source": source, "contract": report.as_dict()}
    if context is not None:
        cutoff = start  # the day's rows are scored at 00:00 of the day: nothing observed later may join
        observed, context_source, context_report = checked_batch(
            ds, context.table, context.contract, cutoff - timedelta(hours=context.lookback_hours), cutoff)
        if observed.empty:
            context_report.warnings.append("no observations in the lookback window: context features are missing")
        frame = join_as_of(frame, observed, context)
        manifest["context"] = {"source": context_source, "contract": context_report.as_dict()}
    lake = default_lake()
    part = lake.commit_partition(area, model, ds, frame, {
        **manifest,
        "extracted_at": datetime.now(timezone.utc).isoformat(),
        "code_version": registry.code_version(),
    })
    return {"ds": ds, "uri": lake.partition_uri(area, model, ds), "rows": part.row_count,
            "content_hash": part.content_hash, "warnings": report.warnings}


def join_as_of(rows, observed, context: Context):
    """Attach, per join key, the latest observation (all observed before the cut-off by construction)."""
    latest = observed.sort_values(context.observed_at).drop_duplicates(context.join_on, keep="last")
    latest = latest.drop(columns=[c for c in latest.columns if c.endswith("_UTC")])
    renamed = latest.rename(columns={c: f"{context.prefix}{c}" for c in latest.columns if c != context.join_on})
    return rows.merge(renamed, on=context.join_on, how="left")


def ingest_features(model: str, ds: str) -> dict:
    """The day's scheduled rows (published before ds starts), with context observed before the cut-off."""
    cfg, ds = model_config(model), checked_ds(ds)
    start, end = day_interval(ds)
    return extract(FEATURES_AREA, cfg.name, ds, cfg.source.table, cfg.source.contract, start, end, cfg.context)


def ingest_labels(model: str, ds: str) -> dict:
    """Outcomes that became available during [ds-1-delay, ds-delay): all known before ds's cut-off."""
    cfg, ds = model_config(model), checked_ds(ds)
    start, end = day_interval(shift(ds, -1 - cfg.labels.delay_days))
    return extract(LABELS_AREA, cfg.name, ds, cfg.labels.table, cfg.labels.contract, start, end)
