"""The training stage: assemble an as-of training set from the lake, split it by time, search, fit and
evaluate (``fit_challenger``, shared by the train DAG and the replay of ``mlplatform.evaluation``), then
register the result as ``challenger`` with the gate's verdict (``train_challenger``, the DAG's job)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from mlplatform.config import MODEL_FAMILIES, ModelConfig
from mlplatform.dates import shift
from mlplatform.features import build_features, build_target
from mlplatform.lake import FEATURES_AREA, LABELS_AREA, REFERENCE_AREA, TRAINING_SETS_AREA, Lake

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@dataclass
class TrainingSet:
    frame: "pd.DataFrame"  # raw source columns + target, one row per labelled entity
    version: str
    cutoff_ds: str
    feature_partitions: list[dict] = field(default_factory=list)
    label_partitions: list[dict] = field(default_factory=list)


def dataset_version(partition_hashes: list[str]) -> str:
    """A training-set version is derived from the ordered hashes of the partitions it reads."""
    return hashlib.sha256("\n".join(partition_hashes).encode()).hexdigest()[:16]


def assemble_training_set(lake: Lake, cfg: ModelConfig, cutoff_ds: str, window_days: int | None = None) -> TrainingSet:
    """Rows scheduled in [cutoff - window, cutoff) whose label was available before the cut-off.

    Label partition ``ds=X`` holds outcomes that became available during the day before X,
    so every label partition with ds <= cutoff was known at the cut-off, and none after it.
    """
    window = window_days or cfg.training.window_days
    feature_parts = lake.list_partitions(FEATURES_AREA, cfg.name, shift(cutoff_ds, -window), cutoff_ds)
    label_parts = lake.list_partitions(LABELS_AREA, cfg.name, None, shift(cutoff_ds, 1))
    if not feature_parts:
        raise ValueError(f"{cfg.name}: no feature partitions in the {window} days before {cutoff_ds}")
    features = [_pinned(p) for p in feature_parts]
    labels = [_pinned(p) for p in label_parts]
    return _join(lake, cfg, cutoff_ds, features, labels)


def _pinned(part) -> dict:
    pinned = {"ds": part.ds, "files": part.manifest["files"], "content_hash": part.content_hash,
              "query_id": part.manifest.get("source", {}).get("query_id")}
    if "file_hashes" in part.manifest:
        pinned["file_hashes"] = part.manifest["file_hashes"]
    if "context" in part.manifest:
        pinned["context_query_id"] = part.manifest["context"]["source"]["query_id"]
    return pinned


def _read_pinned(lake: Lake, area: str, name: str, pinned: list[dict]):
    import pandas as pd

    frames = [lake.read_files(area, name, p["ds"], p["files"], p["content_hash"], p.get("file_hashes")) for p in pinned]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _join(lake: Lake, cfg: ModelConfig, cutoff_ds: str, features: list[dict], label_parts: list[dict]) -> TrainingSet:
    raw = _read_pinned(lake, FEATURES_AREA, cfg.name, features)
    labels = _read_pinned(lake, LABELS_AREA, cfg.name, label_parts)
    if labels.empty:
        raise ValueError(f"{cfg.name}: no labels available before {cutoff_ds}")
    labels = labels.drop_duplicates(subset=[cfg.labels.key], keep="last")
    labels[cfg.target.name] = build_target(labels, cfg)
    joined = raw.merge(labels[[cfg.labels.key, cfg.target.name]], left_on=cfg.source.key,
                       right_on=cfg.labels.key, how="inner", suffixes=("", "_label"))
    joined = joined[joined[cfg.target.name].notna()].sort_values([cfg.source.event_time, cfg.source.key])
    joined = joined.reset_index(drop=True)
    hashes = [p["content_hash"] for p in features] + [p["content_hash"] for p in label_parts]
    return TrainingSet(frame=joined, version=dataset_version(hashes), cutoff_ds=cutoff_ds,
                       feature_partitions=features, label_partitions=label_parts)


def save_training_set(lake: Lake, cfg: ModelConfig, ts: TrainingSet) -> str:
    """Record which partition files make up this version; returns the manifest's relative path."""
    relpath = f"{TRAINING_SETS_AREA}/{cfg.name}/{ts.version}.json"
    lake.write_json(relpath, {"version": ts.version, "model": cfg.name, "cutoff_ds": ts.cutoff_ds,
                              "rows": len(ts.frame), "feature_partitions": ts.feature_partitions,
                              "label_partitions": ts.label_partitions})
    return relpath


def load_training_set(lake: Lake, cfg: ModelConfig, version: str) -> TrainingSet:
    """The exact data of a recorded version, even if some of its days were re-ingested since."""
    manifest = lake.read_json(f"{TRAINING_SETS_AREA}/{cfg.name}/{version}.json")
    ts = _join(lake, cfg, manifest["cutoff_ds"], manifest["feature_partitions"], manifest["label_partitions"])
    if ts.version != version:
        raise ValueError(f"training set {version} reloaded as {ts.version}")
    return ts


def time_split(frame: "pd.DataFrame", time_column: str, holdout_days: int) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """The last ``holdout_days`` calendar days form the holdout; nothing is shuffled across time."""
    import pandas as pd

    days = pd.to_datetime(frame[time_column]).dt.normalize()
    distinct = sorted(days.unique())
    if len(distinct) <= holdout_days:
        raise ValueError(f"need more than {holdout_days} days of labelled data, got {len(distinct)}")
    first_holdout_day = distinct[-holdout_days]
    return frame[days < first_holdout_day], frame[days >= first_holdout_day]


def _encoder(cfg: ModelConfig, one_hot: bool):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline as chain
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    cats, nums = cfg.categorical_features, cfg.numeric_features
    if one_hot:  # linear models: one column per category, scaled numbers, missing values imputed
        categorical = OneHotEncoder(handle_unknown="ignore", min_frequency=20, dtype="float64")
        numeric = chain(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    else:  # trees: unknown and missing categories become -1, which the booster treats as missing
        categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                     encoded_missing_value=-1, dtype="float64")
        numeric = "passthrough"
    return ColumnTransformer([("categorical", categorical, cats), ("numeric", numeric, nums)],
                             verbose_feature_names_out=False)


def _hist_gradient_boosting(cfg: ModelConfig, params: dict):
    from sklearn.ensemble import HistGradientBoostingClassifier

    is_categorical = [True] * len(cfg.categorical_features) + [False] * len(cfg.numeric_features)
    return _encoder(cfg, one_hot=False), HistGradientBoostingClassifier(
        categorical_features=is_categorical, random_state=0, **params)


def _logistic_regression(cfg: ModelConfig, params: dict):
    from sklearn.linear_model import LogisticRegression

    return _encoder(cfg, one_hot=True), LogisticRegression(max_iter=1000, **params)


FAMILIES = {"hist_gradient_boosting": _hist_gradient_boosting, "logistic_regression": _logistic_regression}
assert set(FAMILIES) == set(MODEL_FAMILIES), "config.MODEL_FAMILIES and training.FAMILIES must agree"

# The types beyond skops' defaults that each family's fitted pipeline holds: the only ones the platform
# will load (registry.load_version), whatever a model artifact's own MLmodel claims. A new family adds
# its types here; registration refuses a model that holds any other.
SKOPS_TRUSTED_TYPES = {
    "hist_gradient_boosting": ("functools.partial", "sklearn.utils.validation.check_array",
                               "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"),
    "logistic_regression": ("numpy.dtype",),
}
assert set(SKOPS_TRUSTED_TYPES) == set(FAMILIES), "every model family declares its trusted types"


def trusted_model_types() -> list[str]:
    """The allowlist of non-default types a platform model may hold, over all families."""
    return sorted({t for types in SKOPS_TRUSTED_TYPES.values() for t in types})


def make_pipeline(cfg: ModelConfig, family: str, params: dict):
    from sklearn.pipeline import Pipeline

    encode, estimator = FAMILIES[family](cfg, params)
    return Pipeline([("encode", encode), ("model", estimator)])


def fit(train: "pd.DataFrame", cfg: ModelConfig, family: str | None = None, params: dict | None = None):
    """Fit one pipeline; without arguments, the configured default family and parameters."""
    family = family or cfg.training.family
    model = make_pipeline(cfg, family, params if params is not None else cfg.training.params)
    model.fit(build_features(train, cfg), train[cfg.target.name].astype(int))
    return model


def evaluate(model, frame: "pd.DataFrame", cfg: ModelConfig) -> dict[str, float]:
    return score_metrics(frame[cfg.target.name], model.predict_proba(build_features(frame, cfg))[:, 1], cfg)


def score_metrics(target, p, cfg: ModelConfig) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, log_loss, precision_score, recall_score, roc_auc_score

    y = target.astype(int)
    flagged = (p >= cfg.thresholds.decision_threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "precision": float(precision_score(y, flagged, zero_division=0)),
        "recall": float(recall_score(y, flagged, zero_division=0)),
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }


# -- one training: the core the DAG and the replay share ------------------------------------------------
@dataclass
class TrainedChallenger:
    """A challenger fitted on an as-of training set, with its holdout evidence."""
    cfg: ModelConfig
    dataset: TrainingSet
    train_rows: "pd.DataFrame"
    holdout: "pd.DataFrame"
    candidates: list
    budget: int
    model: object
    holdout_features: "pd.DataFrame"
    holdout_scores: "np.ndarray"
    metrics: dict

    @property
    def best(self):
        return self.candidates[0]

    @property
    def prior_rate(self) -> float:
        return float(self.train_rows[self.cfg.target.name].mean())

    def holdout_segments(self) -> dict:
        return {col: self.holdout[col].astype(str).to_numpy() for col in self.cfg.gate.segments}

    def reference(self) -> "pd.DataFrame":
        """Drift reference: the most recent training rows' features, with the model's scores."""
        from mlplatform.evidently_reports import PREDICTION_COLUMN

        reference = build_features(self.train_rows.tail(self.cfg.thresholds.reference_rows), self.cfg)
        reference[PREDICTION_COLUMN] = self.model.predict_proba(reference)[:, 1]
        return reference.reset_index(drop=True)

    def validation(self) -> "pd.DataFrame":
        """Performance reference: the holdout's outcomes and the model's scores on it."""
        from mlplatform.evidently_reports import PREDICTION_COLUMN

        validation = self.holdout[[self.cfg.source.key, self.cfg.target.name]].reset_index(drop=True)
        validation[PREDICTION_COLUMN] = self.holdout_scores
        return validation


def fit_challenger(lake: Lake, cfg: ModelConfig, cutoff_ds: str, window_days: int | None = None,
                   search_budget: int | None = None, dataset: TrainingSet | None = None) -> TrainedChallenger:
    """Search and fit on data known before the cut-off; score the most recent holdout days, which the
    model never trained on. Deterministic: the same lake and arguments give the same model. ``dataset`` is
    the training set for this cut-off if the caller has assembled it already."""
    from mlplatform.search import run_search

    dataset = dataset or assemble_training_set(lake, cfg, cutoff_ds, window_days)
    save_training_set(lake, cfg, dataset)
    train_rows, holdout = _split(cfg, dataset)
    budget = cfg.training.search.budget if search_budget is None else search_budget
    candidates = run_search(train_rows, cfg, budget)
    model = fit(train_rows, cfg, candidates[0].family, candidates[0].params)
    return _on_holdout(cfg, dataset, train_rows, holdout, candidates, budget, model)


def registered_challenger(lake: Lake, cfg: ModelConfig, dataset: TrainingSet, model) -> TrainedChallenger:
    """A challenger already fitted on ``dataset`` and registered (by a try that died afterwards), with the
    same split and holdout evidence as ``fit_challenger`` gives, without searching or fitting again."""
    save_training_set(lake, cfg, dataset)
    train_rows, holdout = _split(cfg, dataset)
    return _on_holdout(cfg, dataset, train_rows, holdout, [], 0, model)


def _split(cfg: ModelConfig, dataset: TrainingSet) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    train_rows, holdout = time_split(dataset.frame, cfg.source.event_time, cfg.training.holdout_days)
    if len(train_rows) < cfg.training.min_training_rows:
        raise ValueError(f"{cfg.name}: {len(train_rows)} training rows, fewer than {cfg.training.min_training_rows}")
    return train_rows, holdout


def _on_holdout(cfg: ModelConfig, dataset: TrainingSet, train_rows, holdout, candidates: list, budget: int,
                model) -> TrainedChallenger:
    holdout_features = build_features(holdout, cfg)
    scores = model.predict_proba(holdout_features)[:, 1]
    metrics = score_metrics(holdout[cfg.target.name], scores, cfg)
    return TrainedChallenger(cfg, dataset, train_rows, holdout, candidates, budget, model, holdout_features,
                             scores, metrics)


# -- the cut-off against the lake's labelled days ------------------------------------------------------------
class CutoffOutsideLabels(ValueError):
    """A cut-off for which the lake holds no outcomes: retrying cannot make them appear."""


# Errors that a retry cannot fix: the train DAG fails its task at once on them (AirflowFailException).
FAIL_FAST = (CutoffOutsideLabels,)
# The trigger form is built when the DAG file is parsed: reading the lake for it must never hold parsing up.
FORM_LAKE_TIMEOUT_S = 2.0


def labelled_days(lake: Lake, model: str) -> tuple[str, str] | None:
    """The first and last label partitions (days) committed in the lake, or None."""
    return lake.day_range(LABELS_AREA, model)


def describe_labelled_days(days: tuple[str, str] | None) -> str:
    return f"labelled days in the lake: {days[0]} .. {days[1]}" if days else "no labelled days yet"


def check_cutoff(lake: Lake, model: str, cutoff_ds: str) -> None:
    """Refuse a cut-off outside the lake's labelled days (``CutoffOutsideLabels``). Label partition ``ds=D``
    holds the outcomes known by D's 00:00, so a training to cut-off D needs partition D: with a later cut-off
    it would silently train on older outcomes than its cut-off claims."""
    days = labelled_days(lake, model)
    if days is None:
        raise CutoffOutsideLabels(f"{model}: cannot train to cut-off {cutoff_ds}: the lake holds no labelled days "
                                  f"yet; ingest some days first (backfill {model}__ingest)")
    first, last = days
    if cutoff_ds > last:
        raise CutoffOutsideLabels(f"{model}: cut-off {cutoff_ds} lies beyond the newest labelled day "
                                  f"({describe_labelled_days(days)}); choose a cut-off from {first} to {last}, "
                                  f"or ingest the days up to {cutoff_ds} first")
    if cutoff_ds < first:
        raise CutoffOutsideLabels(f"{model}: cut-off {cutoff_ds} lies before the first labelled day "
                                  f"({describe_labelled_days(days)}); choose a cut-off from {first} to {last}")


def labelled_days_for_form(model: str, timeout_s: float = FORM_LAKE_TIMEOUT_S) -> str:
    """The lake's labelled days as the trigger form states them. Runs at DAG-parse time, so it never raises and
    never waits longer than ``timeout_s``: an unreachable lake (an S3 endpoint that does not answer retries for
    minutes) is reported, not waited for."""
    import threading

    from mlplatform.lake import default_lake

    found: dict = {}

    def read() -> None:
        try:
            found["days"] = labelled_days(default_lake(), model)
        except Exception as exc:  # noqa: BLE001 - whatever the storage raises, parsing must go on
            found["error"] = exc

    reader = threading.Thread(target=read, name=f"labelled-days-{model}", daemon=True)
    reader.start()
    reader.join(timeout_s)
    if "days" in found:
        return describe_labelled_days(found["days"])
    why = f"{type(found['error']).__name__}" if "error" in found else f"no answer within {timeout_s:g} s"
    return f"the lake's labelled days could not be read when this form was built ({why})"


# -- the train DAG's job ------------------------------------------------------------------------------------
IDEMPOTENCY_TAG = "idempotency_key"
AIRFLOW_RUN_TAG = "airflow_run"


def idempotency_key(model: str, cutoff_ds: str, dataset_version: str, airflow_run: str) -> str:
    """One training: the model, its cut-off, the exact training set and the Airflow run that asked for it."""
    return hashlib.sha256("\n".join([model, cutoff_ds, dataset_version, airflow_run]).encode()).hexdigest()[:24]


def train_challenger(model: str, cutoff_ds: str, reason: str, window_days: int | None = None,
                     search_budget: int | None = None, logical_date: str | None = None,
                     airflow_run: str | None = None) -> dict:
    """Search and train on data known before the cut-off, register the best as ``challenger``, and
    judge it against the champion on the same most recent holdout. Promotion is a separate step. A cut-off
    outside the lake's labelled days is refused first (``CutoffOutsideLabels``).

    Exactly once per ``idempotency_key``: a retry in the same Airflow run (``airflow_run``, else the
    logical date) of a try that died after registering reuses that version, without a second one, and
    completes the remaining steps; the dead try's MLflow run, left RUNNING, ends as FAILED."""
    from mlplatform import promotion, registry
    from mlplatform.config import model_config, settings
    from mlplatform.dates import checked_ds
    from mlplatform.lake import default_lake

    cfg, lake, cutoff_ds = model_config(model), default_lake(), checked_ds(cutoff_ds)
    check_cutoff(lake, cfg.name, cutoff_ds)
    dataset = assemble_training_set(lake, cfg, cutoff_ds, window_days)  # cheap, and it names the data
    run = airflow_run or logical_date or ""
    key = idempotency_key(cfg.name, cutoff_ds, dataset.version, run)
    mlc = registry.client(settings().mlflow_tracking_uri)
    registry.end_unfinished_runs(mlc, cfg.name, IDEMPOTENCY_TAG, key)
    earlier = registry.registered_by_tag(mlc, cfg.name, IDEMPOTENCY_TAG, key)
    if earlier:
        trained = registered_challenger(lake, cfg, dataset, registry.load_version(cfg.name, earlier[1]))
    else:
        trained = fit_challenger(lake, cfg, cutoff_ds, window_days, search_budget, dataset=dataset)
    seen = promotion.reconcile(lake, mlc, cfg.name, f"training of {cfg.name} to {cutoff_ds}")
    decision = _gate(cfg, trained, seen)
    tags = {"cutoff_ds": cutoff_ds, "trigger_reason": reason, "dataset_version": dataset.version,
            "logical_date": logical_date or cutoff_ds, IDEMPOTENCY_TAG: key, AIRFLOW_RUN_TAG: run}
    dataset_info = {"version": dataset.version, "cutoff_ds": cutoff_ds,
                    "manifest": lake.uri(f"{TRAINING_SETS_AREA}/{cfg.name}/{dataset.version}.json"),
                    "feature_partitions": dataset.feature_partitions, "label_partitions": dataset.label_partitions}
    run_id, version = earlier or _register(trained, tags, dataset_info, decision)
    family = mlc.get_run(run_id).data.params["family"] if earlier else trained.best.family
    _finish_registration(lake, mlc, trained, run_id, version, tags, decision, seen)
    return {"run_id": run_id, "version": version, "cutoff_ds": cutoff_ds, "reason": reason,
            "gate": {"promote": decision.promote, "reason": decision.reason, "auc_gain": decision.auc_gain,
                     "ci95": [decision.ci_low, decision.ci_high], "challenger_auc": decision.challenger_auc,
                     "champion_auc": decision.champion_auc, "holdout_rows": decision.holdout_rows},
            "seen": asdict(seen), "holdout_auc": trained.metrics["roc_auc"], "dataset_version": dataset.version,
            "family": family}


def _gate(cfg: ModelConfig, trained: TrainedChallenger, seen):
    """The promotion gate: challenger and champion scored on the same holdout, which the challenger never saw."""
    from mlplatform import gates, registry

    champion_scores = None
    if seen.champion is not None:
        champion_scores = registry.load_version(cfg.name, seen.champion).predict_proba(trained.holdout_features)[:, 1]
    return gates.decide_promotion(trained.holdout[cfg.target.name].to_numpy(), trained.holdout_scores,
                                  champion_scores, trained.holdout_segments(), cfg.gate, prior_rate=trained.prior_rate)


def _register(trained: TrainedChallenger, tags: dict, dataset_info: dict, decision) -> tuple[str, str]:
    """Log the training run (with its search candidates) and register its model: (run_id, version)."""
    from mlplatform import registry

    cfg, holdout, best = trained.cfg, trained.holdout, trained.best
    params = {"family": best.family, **best.params, "search_budget": trained.budget,
              "candidates": len(trained.candidates), "train_rows": len(trained.train_rows),
              "holdout_rows": len(holdout), "holdout_start": str(holdout[cfg.source.event_time].min()),
              "decision_threshold": cfg.thresholds.decision_threshold}
    return registry.log_training_run(
        cfg, trained.model, trained.train_rows, build_features(trained.train_rows.head(50), cfg), trained.metrics,
        params, tags, dataset_info,
        {"training_set.json": dataset_info, "promotion_decision.json": decision.as_dict()}, trained.candidates)


def _finish_registration(lake: Lake, mlc, trained: TrainedChallenger, run_id: str, version: str, tags: dict,
                         decision, seen) -> None:
    """The steps after registration, each idempotent: drift and validation references, the version's tags
    and description, and the ``challenger`` alias."""
    from mlplatform import registry

    cfg = trained.cfg
    reference = f"{REFERENCE_AREA}/{cfg.name}/run={run_id}/reference.parquet"
    validation = f"{REFERENCE_AREA}/{cfg.name}/run={run_id}/validation.parquet"
    lake.write_frame(reference, trained.reference())
    lake.write_frame(validation, trained.validation())
    evidence = {"reference_path": reference, "validation_path": validation,
                "holdout_auc": f"{trained.metrics['roc_auc']:.6f}",
                "promotion_decision": decision.reason, "gate_promote": str(decision.promote).lower(),
                "gate_auc_gain": f"{decision.auc_gain:.4f}",
                "gate_auc_gain_ci95": f"[{decision.ci_low:.4f}, {decision.ci_high:.4f}]",
                "gate_compared_with": f"v{seen.champion}" if seen.champion else "prior-rate baseline"}
    for key, value in {**tags, **evidence}.items():
        mlc.set_model_version_tag(cfg.name, version, key, value)
    mlc.update_model_version(cfg.name, version, description=f"Gate: {decision.reason}. Evidence: "
                             f"promotion_decision.json in run {run_id}.")
    registry.set_alias(mlc, cfg.name, registry.CHALLENGER, version)


def end_failed_training(model: str, airflow_run: str) -> list[str]:
    """The train task's failure callback: its MLflow runs still RUNNING (a killed or timed-out try) end as
    FAILED. Returns their ids."""
    from mlplatform import registry
    from mlplatform.config import settings

    return registry.end_unfinished_runs(registry.client(settings().mlflow_tracking_uri), model, AIRFLOW_RUN_TAG,
                                        airflow_run)
