"""Data contracts: what a source batch must look like before anything downstream runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class ContractViolation(ValueError):
    """A batch broke its contract. Retrying cannot fix bad data."""

    def __init__(self, dataset: str, column: str, rule: str, detail: str):
        self.dataset, self.column, self.rule, self.detail = dataset, column, rule, detail
        super().__init__(f"{dataset}: column {column!r} broke rule {rule!r}: {detail}")

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "column": self.column, "rule": self.rule, "detail": self.detail}


@dataclass(frozen=True)
class Contract:
    dataset: str
    required_columns: tuple[str, ...]
    key: str
    min_rows: int = 1


def check(frame: "pd.DataFrame", contract: Contract) -> list[str]:
    """Raise ContractViolation on a breach; return warnings for acceptable oddities."""
    for col in contract.required_columns:
        if col not in frame.columns:
            raise ContractViolation(contract.dataset, col, "required_column", "column is missing from the batch")
    if len(frame) < contract.min_rows:
        raise ContractViolation(contract.dataset, "*", "min_rows", f"{len(frame)} rows, expected at least {contract.min_rows}")
    dupes = int(frame[contract.key].duplicated().sum())
    if dupes:
        raise ContractViolation(contract.dataset, contract.key, "unique_key", f"{dupes} duplicate keys")
    extra = sorted(set(frame.columns) - set(contract.required_columns))
    return [f"extra columns accepted: {extra}"] if extra else []
