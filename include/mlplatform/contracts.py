"""Data contracts: what a source batch must look like before anything downstream runs.

A contract is declared per source in the model YAML. ``check`` raises ``ContractViolation``
naming the column and the rule on a breach, and returns a ``ContractReport`` of accepted
oddities (extra columns, unseen categories) that goes into the partition manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

DTYPE_KINDS = {"int": "iu", "float": "iuf", "str": "OSU", "date": "OM", "timestamp": "M"}


class ContractViolation(ValueError):
    """A batch broke its contract. Retrying cannot fix bad data."""

    def __init__(self, dataset: str, column: str, rule: str, detail: str):
        self.dataset, self.column, self.rule, self.detail = dataset, column, rule, detail
        super().__init__(f"data contract breach in {dataset}: column {column!r} broke rule {rule!r}: {detail}")

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "column": self.column, "rule": self.rule, "detail": self.detail}


@dataclass(frozen=True)
class ColumnRule:
    dtype: str
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None  # known values: unseen ones are accepted and counted

    def __post_init__(self):
        if self.dtype not in DTYPE_KINDS:
            raise ValueError(f"unknown dtype {self.dtype!r}; use one of {sorted(DTYPE_KINDS)}")


@dataclass(frozen=True)
class Contract:
    dataset: str
    key: str | tuple[str, ...]
    columns: dict[str, ColumnRule]
    min_rows: int = 1
    max_rows: int | None = None
    event_time: str | None = None  # must lie inside the batch's interval
    # A date column naming the day each row belongs to: the day's batch is selected by it, so a row that
    # claims the day but whose event time lies elsewhere is a breach instead of a row silently left out.
    partition_column: str | None = None

    def __post_init__(self):
        pc = self.partition_column
        if pc is not None and (pc not in self.columns or self.columns[pc].dtype != "date"):
            raise ValueError(f"{self.dataset}: partition_column {pc!r} must be a declared column of dtype date")

    @property
    def queried_columns(self) -> tuple[str, ...]:
        """Every column an extract names: the declared ones plus those its WHERE clause uses."""
        extra = [c for c in (self.event_time, self.partition_column) if c and c not in self.columns]
        return (*self.columns, *extra)

    @classmethod
    def from_config(cls, dataset: str, key, event_time: str | None, raw: dict) -> Contract:
        key = raw.get("key", key)
        key = tuple(key) if isinstance(key, list) else key
        columns = {name: ColumnRule(**{**rule, "categories": tuple(rule["categories"]) if rule.get("categories") else None})
                   for name, rule in raw["columns"].items()}
        rows = raw.get("rows", {})
        return cls(dataset, key, columns, rows.get("min", 1), rows.get("max"), event_time,
                   raw.get("partition_column"))


@dataclass
class ContractReport:
    warnings: list[str] = field(default_factory=list)
    unseen_categories: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"warnings": self.warnings, "unseen_categories": self.unseen_categories}


def _fail(contract: Contract, column: str, rule: str, detail: str):
    raise ContractViolation(contract.dataset, column, rule, detail)


def _check_shape(frame: "pd.DataFrame", contract: Contract, report: ContractReport) -> None:
    missing = [c for c in contract.columns if c not in frame.columns]
    extra = sorted(set(frame.columns) - set(contract.columns))
    if missing:
        hint = f"; unexpected columns {extra} (renamed?)" if extra else ""
        _fail(contract, missing[0], "required_column", f"missing from the batch{hint}")
    if extra:
        report.warnings.append(f"extra columns accepted and kept: {extra}")
    if len(frame) < contract.min_rows:
        _fail(contract, "*", "row_count", f"{len(frame)} rows, expected at least {contract.min_rows}")
    if contract.max_rows is not None and len(frame) > contract.max_rows:
        _fail(contract, "*", "row_count", f"{len(frame)} rows, expected at most {contract.max_rows}")


def check_table_columns(contract: Contract, table: str, columns: list[str]) -> None:
    """Schema drift, before any row is read: raise ContractViolation (rule ``required_column``) when the
    table lacks a column the extract names, naming the missing ones and listing the table's columns the
    contract does not declare. Names compare in upper case, as the warehouse stores unquoted ones."""
    present = {c.upper() for c in columns}
    missing = [c for c in contract.queried_columns if c.upper() not in present]
    if missing:
        known = {c.upper() for c in contract.queried_columns}
        unexpected = [c for c in columns if c.upper() not in known]
        hint = f"unexpected columns {unexpected} (renamed?)" if unexpected else "no unexpected columns (dropped?)"
        _fail(contract, ",".join(missing), "required_column", f"missing from table {table}; {hint}")


def _check_interval(frame: "pd.DataFrame", contract: Contract, interval: tuple[datetime, datetime]) -> None:
    """Every event time inside [start, end). The detail says how many of the batch's rows (and, with a
    partition column, which day they claim) lie outside, and where their event times lie."""
    import pandas as pd

    times = pd.to_datetime(frame[contract.event_time])
    outside = (times < interval[0]) | (times >= interval[1])
    if outside.any():
        claim = ""
        if contract.partition_column:
            days = sorted({str(d) for d in frame.loc[outside, contract.partition_column]})
            claim = f" with {contract.partition_column} = {' or '.join(days[:3])}" + (" or ..." if len(days) > 3 else "")
        wrong = times[outside]
        _fail(contract, contract.event_time, "inside_interval",
              f"{int(outside.sum())} of {len(frame)} rows{claim} lie outside [{interval[0]}, {interval[1]}): "
              f"their {contract.event_time} runs from {wrong.min()} to {wrong.max()}")


def _offenders(values: "pd.Series", rule: ColumnRule) -> list[str]:
    import pandas as pd

    if rule.dtype in ("int", "float"):
        values = values[pd.to_numeric(values, errors="coerce").isna()]
    return values.astype(str).head(3).tolist()


def _check_column(frame: "pd.DataFrame", name: str, rule: ColumnRule, contract: Contract, report: ContractReport) -> None:
    values = frame[name]
    missing = values.isna()  # computed once: on text columns it is the costliest step of the check
    nulls = int(missing.sum())
    if len(values) and nulls == len(values):
        _fail(contract, name, "not_all_null", f"all {nulls} values are null")
    if nulls and not rule.nullable:
        _fail(contract, name, "not_null", f"{nulls} null values")
    present = values[~missing] if nulls else values
    if present.empty:
        return  # nothing to check (an empty batch may come back with untyped columns)
    if present.dtype.kind not in DTYPE_KINDS[rule.dtype]:
        _fail(contract, name, "dtype", f"expected {rule.dtype}, got {present.dtype} (e.g. {_offenders(present, rule)})")
    if rule.min is not None and (present < rule.min).any():
        _fail(contract, name, "min", f"{int((present < rule.min).sum())} values below {rule.min}, e.g. {present.min()}")
    if rule.max is not None and (present > rule.max).any():
        _fail(contract, name, "max", f"{int((present > rule.max).sum())} values above {rule.max}, e.g. {present.max()}")
    if rule.categories is not None:
        unseen = present[~present.isin(rule.categories)].value_counts()
        if len(unseen):
            report.unseen_categories[name] = {str(k): int(v) for k, v in unseen.items()}
            report.warnings.append(f"{name}: {int(unseen.sum())} rows with unseen categories {sorted(unseen.index)}")


def check(frame: "pd.DataFrame", contract: Contract, interval: tuple[datetime, datetime] | None = None) -> ContractReport:
    """Raise ContractViolation on the first breach; otherwise report what was accepted."""
    report = ContractReport()
    _check_shape(frame, contract, report)
    for name, rule in contract.columns.items():
        _check_column(frame, name, rule, contract, report)
    keys = [contract.key] if isinstance(contract.key, str) else list(contract.key)
    duplicated = frame.duplicated(subset=keys)
    if duplicated.any():
        example = frame.loc[duplicated, keys].iloc[0].tolist()
        _fail(contract, ",".join(keys), "unique_key", f"{int(duplicated.sum())} duplicate keys, e.g. {example}")
    if interval and contract.event_time and len(frame):
        _check_interval(frame, contract, interval)
    return report
