"""Evidently reports: a day's predictions against the champion's reference data.

Drift at scale: when either side has more than ``max_rows`` rows, the drift report runs on a
uniform random sample (without replacement, fixed seed) of each side. On large samples Evidently
judges drift by distances (normed Wasserstein for numeric columns, Jensen-Shannon for categorical
ones and for numeric columns with at most 5 distinct values, both with threshold 0.1). Those distances
are consistent estimates: from 100k rows per side their standard deviation is at most about 0.006,
so the sample keeps the full data's verdict of every column more than about 0.02 from the threshold.
The test is chosen on the full data, as a full-data run would choose it. See README "Drift reports at
scale and the Evidently UI" and bench/bench_drift.py for the numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlplatform.config import ModelConfig
from mlplatform.drift_policy import ColumnVerdict

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PREDICTION_COLUMN = "score"

# Rows per side above which the drift report samples; chosen with bench/bench_drift.py (1M vs 1M rows,
# 20 features: 30 s and 2 GB budget, verdicts as a full-data run's). None disables sampling.
DRIFT_SAMPLE_ROWS = 100_000
DRIFT_SAMPLE_SEED = 0
# Evidently switches from p-value tests to distances above this many reference rows
# (evidently.legacy.calculations.stattests.registry._get_default_stattest): a sample must stay above it.
EVIDENTLY_SMALL_SAMPLE_ROWS = 1000
# A Jensen-Shannon distance estimated from n rows per side is inflated by about sqrt((k - 1) / (4 n)) for
# k categories (0.026 for k = 266 at 100k rows), which near the 0.1 threshold moves it by about
# (k - 1) / (8 * 0.1 * n). Sampling keeps at least this many rows per category so that shift stays
# below 0.005: high-cardinality columns need bigger samples (a 4000-category column, the full data).
JS_ROWS_PER_CATEGORY = 250
# Evidently's default tests: the name a given test keeps in the report -> the name of a resolved default.
METHOD_NAMES = {"wasserstein": "Wasserstein distance (normed)", "jensenshannon": "Jensen-Shannon distance",
                "ks": "K-S p_value", "chisquare": "chi-square p_value", "z": "Z-test p_value"}
_DISTANCES = ("wasserstein", "jensenshannon")


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool
    effect_size: float = 0.0


@dataclass(frozen=True)
class DriftResult:
    columns: list[ColumnDrift]
    html: str
    metrics: dict
    # The Evidently run itself (an ``evidently.core.report.Snapshot``), e.g. for mlplatform.evidently_workspace.
    snapshot: Any = field(default=None, repr=False, compare=False)
    reference_rows: int = 0
    current_rows: int = 0
    sample_rows: int | None = None  # rows per side the report analysed when it sampled; None: all rows

    @property
    def sampled(self) -> bool:
        return self.sample_rows is not None

    @property
    def drift_share(self) -> float:
        return sum(c.drifted for c in self.columns) / len(self.columns) if self.columns else 0.0

    def top_drifted(self, n: int = 5) -> list[ColumnDrift]:
        drifted = [c for c in self.columns if c.drifted]
        return sorted(drifted, key=lambda c: c.effect_size, reverse=True)[:n]

    def verdicts(self) -> tuple[ColumnVerdict, ...]:
        return tuple(ColumnVerdict(c.column, c.drifted, c.effect_size) for c in self.columns)


def effect_size(reference: "pd.Series", current: "pd.Series", categorical: bool) -> float:
    """How large a shift is, whatever its significance: the Jensen-Shannon distance (base 2, in [0, 1])
    between category frequencies, or the Wasserstein distance in units of the reference's standard
    deviation. These are the measures Evidently itself uses on large samples; both are consistent
    estimates, so a uniform sample of each side gives the full data's value to within sampling error."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    ref, cur = _non_null(reference), _non_null(current)  # an inf would make the distance nan
    if ref.empty or cur.empty:
        return 0.0
    if categorical:  # frequencies keyed by the values' text, whatever the dtype (object, category, numbers)
        p, q = (s.value_counts(normalize=True) for s in (ref, cur))
        p, q = (f.set_axis(f.index.astype(str)).groupby(level=0).sum() for f in (p, q))
        categories = p.index.union(q.index)
        return float(jensenshannon(p.reindex(categories, fill_value=0.0).to_numpy(),
                                   q.reindex(categories, fill_value=0.0).to_numpy(), base=2))
    ref_values, cur_values = ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)
    spread = float(np.std(ref_values))
    distance = wasserstein_distance(ref_values, cur_values)
    return float(distance / spread) if spread > 0 else float(distance > 0)


def _is_drifted(method: str, score: float, threshold: float) -> bool:
    # Statistical tests report a p-value (drift when small); distances report a size (drift when large).
    name = METHOD_NAMES.get(method, method).lower()
    if "p_value" in name or "test" in name:
        return score < threshold
    return score >= threshold


def column_drifts(report_dict: dict) -> list[ColumnDrift]:
    out = []
    for metric in report_dict["metrics"]:
        config = metric.get("config", {})
        if not config.get("type", "").endswith(":ValueDrift"):
            continue
        score, threshold = float(metric["value"]), float(config["threshold"])
        method = METHOD_NAMES.get(config["method"], config["method"])  # a given test keeps its short name
        out.append(ColumnDrift(config["column"], method, score, threshold, _is_drifted(method, score, threshold)))
    return out


def sample_frame(frame: "pd.DataFrame", max_rows: int | None, seed: int,
                 columns: list[str] | None = None) -> "pd.DataFrame":
    """A uniform random sample of ``max_rows`` rows without replacement (all rows when there are no more
    than that) of ``columns`` (default: all); the same frame and seed give the same sample."""
    import numpy as np

    columns = list(frame.columns) if columns is None else columns
    if max_rows is None or len(frame) <= max_rows:
        return frame[columns]
    positions = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[positions, [frame.columns.get_loc(c) for c in columns]].reset_index(drop=True)


def _non_null(series: "pd.Series") -> "pd.Series":
    import numpy as np

    if series.dtype.kind == "f":
        series = series.replace([np.inf, -np.inf], np.nan)
    return series.dropna()


def _distinct(*series: "pd.Series") -> set:
    import pandas as pd

    return set().union(*(pd.unique(s.to_numpy()) for s in series))


def default_drift_method(reference: "pd.Series", current: "pd.Series", categorical: bool) -> str:
    """Evidently's default drift test for a column, as its registry picks it (``_get_default_stattest``):
    - up to 1000 reference rows: numeric columns with more than 5 distinct values get the two-sample
      Kolmogorov-Smirnov test, others the chi-squared test (the Z-test for proportions when there are at
      most 2 values); drift when the p-value is below 0.05;
    - more than 1000 reference rows: numeric columns with more than 5 distinct values get the Wasserstein
      distance normed by the reference's standard deviation, others the Jensen-Shannon distance (natural
      log); drift when the distance is at least 0.1.
    Rows are counted and values told apart after dropping missing and infinite values."""
    ref, cur = _non_null(reference), _non_null(current)
    large = len(ref) > EVIDENTLY_SMALL_SAMPLE_ROWS
    if categorical and large:
        return "jensenshannon"
    values = _distinct(ref)
    if categorical or len(values) <= 5:  # only the count up to 6 matters for a numeric column
        values |= _distinct(cur)
    if not categorical and len(values) > 5:
        return "wasserstein" if large else "ks"
    if large:
        return "jensenshannon"
    return "chisquare" if len(values) > 2 else "z"


def _sampled_numeric_method(reference: "pd.Series", current: "pd.Series", ref_sample: "pd.Series",
                            cur_sample: "pd.Series") -> str:
    """default_drift_method on the full data, cheaply: a sample with more than 5 distinct values means
    the full data has them too."""
    import numpy as np

    if np.isfinite(reference.to_numpy(dtype=float)).sum() > EVIDENTLY_SMALL_SAMPLE_ROWS \
            and len(_distinct(_non_null(ref_sample), _non_null(cur_sample))) > 5:
        return "wasserstein"
    return default_drift_method(reference, current, categorical=False)


def sample_size(ref_sample: "pd.DataFrame", cur_sample: "pd.DataFrame", categorical: list[str], max_rows: int,
                rows: int) -> int | None:
    """Rows per side for a sampled drift report, from first samples of ``max_rows`` rows per side of
    frames whose larger side has ``rows`` rows: ``max_rows``, raised to ``JS_ROWS_PER_CATEGORY`` rows per
    category of the most varied categorical column (categories too rare to be in the first sample add
    almost nothing to the estimate's inflation); None (all rows) when that reaches ``rows``."""
    most = max((len(_distinct(ref_sample[c].dropna(), cur_sample[c].dropna())) for c in categorical), default=1)
    needed = max(max_rows, JS_ROWS_PER_CATEGORY * (most - 1))
    return None if needed >= rows else needed


def drift_report(reference: "pd.DataFrame", current: "pd.DataFrame", cfg: ModelConfig, *,
                 max_rows: int | None = DRIFT_SAMPLE_ROWS, seed: int = DRIFT_SAMPLE_SEED) -> DriftResult:
    """Evidently's data drift and data summary presets over the monitored features and the score.

    Above ``max_rows`` rows on either side, both run on a uniform random sample of each side (see
    ``sample_size``), the test of each column being the one Evidently picks for the full data;
    ``sample_rows`` then tells the sample size, and the summary's figures are the sample's."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    monitored = cfg.drift_features
    numeric = [f.name for f in monitored if f.kind == "numeric"] + [PREDICTION_COLUMN]
    categorical = [f.name for f in monitored if f.kind == "categorical"]
    columns = numeric + categorical
    largest = max(len(reference), len(current))
    rows, per_column_method = None, None
    ref = cur = None  # a column selection copies the frame: only made when no sample is taken
    if max_rows is not None and largest > max_rows:
        if max_rows <= EVIDENTLY_SMALL_SAMPLE_ROWS:
            raise ValueError(f"max_rows must exceed {EVIDENTLY_SMALL_SAMPLE_ROWS} so that a sample keeps "
                             f"Evidently's large-sample tests, got {max_rows}")
        ref, cur = sample_frame(reference, max_rows, seed, columns), sample_frame(current, max_rows, seed + 1, columns)
        rows = sample_size(ref, cur, categorical, max_rows, largest)
        if rows is None:
            ref = cur = None
        elif rows > max_rows:
            ref, cur = sample_frame(reference, rows, seed, columns), sample_frame(current, rows, seed + 1, columns)
    if ref is None:
        ref, cur = reference[columns], current[columns]
    if rows is not None:
        # Numeric columns get the distance the full data would get: a sample may miss rare values and so
        # cross the 5-distinct-values line. (Categorical columns always get Jensen-Shannon on more than 1000
        # rows; a reference of at most 1000 rows is not sampled, so Evidently's choice stands.)
        methods = {c: _sampled_numeric_method(reference[c], current[c], ref[c], cur[c]) for c in numeric}
        per_column_method = {c: m for c, m in methods.items() if m in _DISTANCES} or None
        # Category dtype: same values, same results, half Evidently's time on string columns.
        ref, cur = ref.astype({c: "category" for c in categorical}), cur.astype({c: "category" for c in categorical})
        log.info("drift report on %d of %d reference and %d of %d current rows", len(ref), len(reference),
                 len(cur), len(current))
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report(
        [DataDriftPreset(columns=columns, per_column_method=per_column_method), DataSummaryPreset(columns=columns)],
        metadata={"reference_rows": str(len(reference)), "current_rows": str(len(current)),
                  "sample_rows": str(rows) if rows is not None else "all"},
    ).run(
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
        current_data=Dataset.from_pandas(cur, data_definition=definition),
    )
    as_dict = snapshot.dict()
    html = snapshot.get_html_str(as_iframe=False)
    drifts = [replace(c, effect_size=effect_size(ref[c.column], cur[c.column], c.column in categorical))
              for c in column_drifts(as_dict)]
    return DriftResult(columns=drifts, html=html, metrics=as_dict, snapshot=snapshot,
                       reference_rows=len(reference), current_rows=len(current), sample_rows=rows)


@dataclass(frozen=True)
class PerformanceResult:
    metrics: dict          # realized metrics of the day, next to the champion's validation figures
    html: str
    evidently: dict
    snapshot: Any = field(default=None, repr=False, compare=False)  # the Evidently run


def performance_report(validation: "pd.DataFrame", labelled: "pd.DataFrame", cfg: ModelConfig) -> PerformanceResult:
    """Realized classification quality of a day's predictions once its labels arrived, with the
    champion's validation (holdout) predictions as Evidently's reference."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    from mlplatform.training import score_metrics

    target = cfg.target.name
    definition = DataDefinition(classification=[BinaryClassification(target=target, prediction_probas=PREDICTION_COLUMN)],
                                numerical_columns=[PREDICTION_COLUMN], categorical_columns=[target])
    # Evidently recognises a binary task only with integer labels equal to pos_label (1), not 1.0.
    validation, labelled = (frame[[target, PREDICTION_COLUMN]].astype({target: "int64"}) for frame in (validation, labelled))
    snapshot = Report([ClassificationPreset(probas_threshold=cfg.thresholds.decision_threshold)]).run(
        reference_data=Dataset.from_pandas(validation, data_definition=definition),
        current_data=Dataset.from_pandas(labelled, data_definition=definition),
    )
    realized = score_metrics(labelled[target], labelled[PREDICTION_COLUMN].to_numpy(), cfg)
    validated = score_metrics(validation[target], validation[PREDICTION_COLUMN].to_numpy(), cfg)
    metrics = {**realized, "late_rate": realized["positive_rate"],
               "predicted_late_rate": float((labelled[PREDICTION_COLUMN] >= cfg.thresholds.decision_threshold).mean()),
               "mean_score": float(labelled[PREDICTION_COLUMN].mean()),
               "validation_auc": validated["roc_auc"], "validation_log_loss": validated["log_loss"],
               "auc_drop": validated["roc_auc"] - realized["roc_auc"]}
    return PerformanceResult(metrics, snapshot.get_html_str(as_iframe=False), snapshot.dict(), snapshot)
