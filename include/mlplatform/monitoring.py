"""Evidently reports: a day's predictions against the champion's reference data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlplatform.config import ModelConfig

if TYPE_CHECKING:
    import pandas as pd

PREDICTION_COLUMN = "score"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: list[ColumnDrift]
    html: str
    metrics: dict

    @property
    def drift_share(self) -> float:
        return sum(c.drifted for c in self.columns) / len(self.columns) if self.columns else 0.0

    def top_drifted(self, n: int = 5) -> list[ColumnDrift]:
        drifted = [c for c in self.columns if c.drifted]
        return sorted(drifted, key=lambda c: c.score, reverse=True)[:n]


def _is_drifted(method: str, score: float, threshold: float) -> bool:
    # Statistical tests report a p-value (drift when small); distances report a size (drift when large).
    if "p_value" in method.lower() or "test" in method.lower():
        return score < threshold
    return score >= threshold


def column_drifts(report_dict: dict) -> list[ColumnDrift]:
    out = []
    for metric in report_dict["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        score, threshold, method = float(metric["value"]), float(config["threshold"]), config["method"]
        out.append(ColumnDrift(config["column"], method, score, threshold, _is_drifted(method, score, threshold)))
    return out


def drift_report(reference: "pd.DataFrame", current: "pd.DataFrame", cfg: ModelConfig) -> DriftResult:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    monitored = cfg.drift_features
    numeric = [f.name for f in monitored if f.kind == "numeric"] + [PREDICTION_COLUMN]
    categorical = [f.name for f in monitored if f.kind == "categorical"]
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(columns=columns), DataSummaryPreset(columns=columns)]).run(
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
    )
    as_dict = snapshot.dict()
    html = snapshot.get_html_str(as_iframe=False)
    return DriftResult(columns=column_drifts(as_dict), html=html, metrics=as_dict)
