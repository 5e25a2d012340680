"""The ingest stage: copy a day's warehouse rows into versioned lake partitions, checked first.

``ingest_features`` takes the rows scheduled on the day (published before it starts) with the
context observed before the cut-off; ``ingest_labels`` takes the outcomes that became available
during the day before. A source whose contract declares a ``partition_column`` is read by it (every
row that claims the day), then its event times are checked against the day; other sources are read
by event time. The table's columns are compared with the contract before anything is read, and each
batch is checked against its contract before anything is written: a breach keeps the batch (or the
reason alone) in quarantine and raises ``ContractViolation``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from mlplatform import contracts, registry
from mlplatform.config import Context, model_config, settings
from mlplatform.dates import checked_ds, day, shift
from mlplatform.lake import FEATURES_AREA, LABELS_AREA, QUARANTINE_AREA, default_lake
from mlplatform.warehouse import (Warehouse, WarehouseColumnMissing, WarehouseTableMissing, select_between,
                                  select_day, summarise)

log = logging.getLogger(__name__)


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
    else:  # an earlier attempt's batch would not match this reason
        lake.delete(f"{qdir}/batch.parquet")
    lake.write_json(f"{qdir}/reason.json", {**reason, "quarantined_at": datetime.now(timezone.utc).isoformat()})
    return lake.uri(qdir)


def batch_query(table: str, contract: contracts.Contract, start: datetime, end: datetime) -> tuple[str, dict]:
    """The day's rows: by the contract's partition column when it declares one (the interval must then be
    one whole day, and the event time is checked against it afterwards), else by the event time."""
    if contract.partition_column is None:
        return select_between(table, tuple(contract.columns), contract.event_time, start, end)
    if start != datetime.combine(start.date(), datetime.min.time()) or end - start != timedelta(days=1):
        raise ValueError(f"{contract.dataset}: a partition column needs a one-day interval, got [{start}, {end})")
    return select_day(table, tuple(contract.columns), contract.partition_column, start.date().isoformat())


def checked_batch(ds: str, table: str, contract: contracts.Contract, start: datetime, end: datetime):
    """The rows of ``table`` for the interval [start, end) (see ``batch_query``), checked against the
    contract: the table's columns first, then the batch. On a breach, the batch (or, when no batch could
    be read, the reason alone) goes to quarantine and ContractViolation is raised."""
    sql, params = batch_query(table, contract, start, end)
    source = {"table": table, "query": sql, "params": params}
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        result = _read_batch(wh, ds, table, contract, source)
        source["query_id"] = result.query_id
        try:
            report = contracts.check(result.frame, contract, (start, end))
        except contracts.ContractViolation as breach:
            if breach.rule == "row_count":
                breach = _with_detail(breach, census(wh, table, contract, start, end))
            raise _quarantined(breach, ds, {"source": source}, result.frame) from breach
    finally:
        wh.close()
    return result.frame, source, report


def _read_batch(wh: Warehouse, ds: str, table: str, contract: contracts.Contract, source: dict):
    """The batch, once the table is known to hold every column the query names. A missing column (found
    by the schema check, or by the driver at query time) is a contract breach; a missing table raises
    WarehouseTableMissing. Either way the reason is quarantined."""
    try:
        columns = wh.table_columns(table)
        try:
            contracts.check_table_columns(contract, table, columns)
        except contracts.ContractViolation as breach:
            raise _quarantined(breach, ds, {"source": source, "table_columns": columns}) from breach
        try:
            return wh.query(source["query"], source["params"])
        except WarehouseColumnMissing as exc:
            breach = contracts.ContractViolation(contract.dataset, exc.column, "required_column", str(exc))
            raise _quarantined(breach, ds, {"source": source}) from exc
    except WarehouseTableMissing as exc:
        quarantine(contract.dataset, ds, {"dataset": contract.dataset, "rule": "table_exists", "column": "*",
                                          "detail": str(exc), **source})
        raise


def _quarantined(breach: contracts.ContractViolation, ds: str, record: dict, batch=None) -> contracts.ContractViolation:
    """Quarantine the breach (and the batch, if any was read); the breach to raise names where it went."""
    where = quarantine(breach.dataset, ds, {**breach.as_dict(), **record}, batch)
    return _with_detail(breach, f"{'batch' if batch is not None else 'reason'} quarantined at {where}")


def _with_detail(breach: contracts.ContractViolation, more: str) -> contracts.ContractViolation:
    return contracts.ContractViolation(breach.dataset, breach.column, breach.rule, f"{breach.detail}; {more}")


def census(wh: Warehouse, table: str, contract: contracts.Contract, start: datetime, end: datetime) -> str:
    """What the table holds around a short day, so that a day that moved or never arrived says so: with a
    partition column, its rows for the day (and where their event times lie) and the rows whose event time
    lies in the interval (and which days they claim); without one, the nearest event times either side."""
    et, pc = contract.event_time, contract.partition_column
    try:
        if pc:
            the_day = start.date().isoformat()
            n, first, last = _count(wh, summarise(table, et, pc, equals=the_day))
            by_day = f"{n} rows with {pc} = {the_day}" + (f" ({et} {_span(first, last)})" if n else "")
            n, first, last = _count(wh, summarise(table, pc, et, start=start, end=end))
            by_time = f"{n} rows with {et} in [{start}, {end})" + (f" ({pc} {_span(first, last)})" if n else "")
            return f"the table holds {by_day}, and {by_time}"
        n, _, last = _count(wh, summarise(table, et, et, end=start))
        before = f"{n} rows with {et} before {start}" + (f" (the last at {last})" if n else "")
        n, first, _ = _count(wh, summarise(table, et, et, start=end))
        after = f"{n} rows with {et} from {end} on" + (f" (the first at {first})" if n else "")
        return f"the table holds {before} and {after}"
    except Exception as exc:  # a failing census must not hide the breach it explains
        log.warning("census of %s failed: %s", table, exc)
        return f"no census of the table ({exc})"


def _span(first, last) -> str:
    return f"{first}" if first == last else f"from {first} to {last}"


def _count(wh: Warehouse, query: tuple[str, dict]) -> tuple[int, object, object]:
    """(rows, least, greatest) of a ``summarise`` query. The range means nothing without rows (the emulator
    answers the MIN of no timestamps with 1970-01-01, not NULL)."""
    row = wh.query(*query).frame.iloc[0]
    return int(row["N"]), row["FIRST"], row["LAST"]


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
