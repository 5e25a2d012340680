"""Typed settings from the environment and model definitions from YAML.

Everything hangs off one data directory and one lake URI, so a deployment changes
environment variables, never code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import yaml

from mlplatform.contracts import Contract
from mlplatform.drift_policy import DriftPolicy
from mlplatform.gates import GatePolicy

# One-slot Airflow pool: promotions and rollbacks of every model run one at a time (created at setup).
PROMOTION_POOL = "model_promotion"

# Model families the training module can build (see mlplatform.training.FAMILIES).
MODEL_FAMILIES = ("hist_gradient_boosting", "logistic_regression")

REPO_ROOT = Path(__file__).resolve().parents[2]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    lake_uri: str
    models_dir: Path
    mlflow_tracking_uri: str
    warehouse_conn_id: str
    slack_conn_id: str
    outbox_path: Path
    airflow_url: str

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("MLOPS_DATA_DIR", REPO_ROOT / ".data")).resolve()
        return cls(
            data_dir=data_dir,
            lake_uri=os.environ.get("MLOPS_LAKE_URI", (data_dir / "lake").as_uri()),
            models_dir=Path(os.environ.get("MLOPS_MODELS_DIR", REPO_ROOT / "include" / "models")),
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            warehouse_conn_id=os.environ.get("MLOPS_WAREHOUSE_CONN_ID", "warehouse"),
            slack_conn_id=os.environ.get("MLOPS_SLACK_CONN_ID", "slack_alerts"),
            outbox_path=Path(os.environ.get("MLOPS_OUTBOX", data_dir / "outbox" / "slack.jsonl")),
            airflow_url=os.environ.get("MLOPS_AIRFLOW_URL", "http://127.0.0.1:8080"),
        )


def settings() -> Settings:
    return Settings.from_env()


def checked_identifier(name: str) -> str:
    """Table and column names cannot be bind parameters, so they must be plain identifiers."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


@dataclass(frozen=True)
class Feature:
    name: str
    column: str
    kind: str  # "numeric" or "categorical"
    transform: str = "identity"
    drift: bool = True  # False for values constant within a day: one day cannot form a distribution


@dataclass(frozen=True)
class Context:
    """Observations joined as of the cut-off: per join key, the latest row observed in the lookback window."""
    table: str
    join_on: str
    observed_at: str
    lookback_hours: int
    prefix: str
    contract: Contract

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.contract.columns)


@dataclass(frozen=True)
class Source:
    table: str
    key: str
    event_time: str
    contract: Contract

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.contract.columns)


@dataclass(frozen=True)
class LabelSource:
    table: str
    key: str
    available_at: str
    delay_days: int
    contract: Contract

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.contract.columns)


@dataclass(frozen=True)
class Target:
    name: str
    column: str
    operator: str
    threshold: float


@dataclass(frozen=True)
class Search:
    """Hyper-parameter search: ``budget`` candidates drawn across ``families`` (name -> parameter grid),
    each scored by expanding-window time-series cross-validation with ``cv_folds`` folds."""
    budget: int = 6
    cv_folds: int = 3
    seed: int = 0
    families: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Training:
    window_days: int
    holdout_days: int
    min_training_rows: int
    family: str = "hist_gradient_boosting"  # used with ``params`` when the search budget is 0
    params: dict = field(default_factory=dict)
    search: Search = field(default_factory=Search)


@dataclass(frozen=True)
class Thresholds:
    decision_threshold: float
    reference_rows: int


@dataclass(frozen=True)
class Schedule:
    ingest: str
    start_date: date
    end_date: date | None


@dataclass(frozen=True)
class ModelConfig:
    name: str
    description: str
    owner: str
    source: Source
    labels: LabelSource
    target: Target
    features: tuple[Feature, ...]
    training: Training
    thresholds: Thresholds
    gate: GatePolicy
    drift_policy: DriftPolicy
    schedule: Schedule
    entity_columns: tuple[str, ...] = ()
    context: Context | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def drift_features(self) -> list[Feature]:
        return [f for f in self.features if f.drift]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]


def _contract(dataset: str, source: dict, event_time: str) -> Contract:
    for column in source["contract"]["columns"]:
        checked_identifier(column)
    return Contract.from_config(dataset, source["key"], event_time, source["contract"])


def _parse_model(raw: dict) -> ModelConfig:
    source = raw["source"]
    labels = raw["labels"]
    features = tuple(Feature(**f) for f in raw["features"])
    for feat in features:
        if feat.kind not in ("numeric", "categorical"):
            raise ValueError(f"feature {feat.name}: kind must be numeric or categorical, got {feat.kind}")
    for col in labels["contract"]["columns"]:
        if col != labels["key"] and any(f.column == col for f in features):
            raise ValueError(f"label column {col} is used as a feature; outcomes must never be features")
    schedule = raw["schedule"]
    return ModelConfig(
        name=raw["name"],
        description=raw.get("description", ""),
        owner=raw.get("owner", "mlops"),
        source=Source(
            table=checked_identifier(source["table"]),
            key=checked_identifier(source["key"]),
            event_time=checked_identifier(source["event_time"]),
            contract=_contract(f"{raw['name']}.features", source, source["event_time"]),
        ),
        labels=LabelSource(
            table=checked_identifier(labels["table"]),
            key=checked_identifier(labels["key"]),
            available_at=checked_identifier(labels["available_at"]),
            delay_days=int(labels.get("delay_days", 0)),
            contract=_contract(f"{raw['name']}.labels", labels, labels["available_at"]),
        ),
        target=Target(**raw["target"]),
        features=features,
        training=_parse_training(raw["training"]),
        thresholds=Thresholds(**raw["thresholds"]),
        gate=GatePolicy(**{**raw.get("gate", {}), "segments": tuple(raw.get("gate", {}).get("segments", ()))}),
        drift_policy=DriftPolicy(**raw.get("drift_policy", {})),
        schedule=Schedule(
            ingest=schedule["ingest"],
            start_date=schedule["start_date"],
            end_date=schedule.get("end_date"),
        ),
        entity_columns=tuple(raw.get("entity_columns", ())),
        context=_parse_context(raw["name"], raw["context"]) if raw.get("context") else None,
    )


def _parse_training(raw: dict) -> Training:
    search = Search(**raw.get("search", {}))
    for family in [raw.get("family", Training.family), *search.families]:
        if family not in MODEL_FAMILIES:
            raise ValueError(f"unknown model family {family!r}; known: {MODEL_FAMILIES}")
    return Training(**{**raw, "search": search})


def _parse_context(model: str, ctx: dict) -> Context:
    return Context(
        table=checked_identifier(ctx["table"]),
        join_on=checked_identifier(ctx["join_on"]),
        observed_at=checked_identifier(ctx["observed_at"]),
        lookback_hours=int(ctx["lookback_hours"]),
        prefix=checked_identifier(ctx["prefix"]),
        contract=Contract.from_config(f"{model}.context", ctx["join_on"], ctx["observed_at"], ctx["contract"]),
    )


def load_model_config(path: Path) -> ModelConfig:
    with open(path) as fh:
        return _parse_model(yaml.safe_load(fh))


@lru_cache(maxsize=8)
def _load_all(models_dir: str) -> tuple[ModelConfig, ...]:
    paths = sorted(Path(models_dir).glob("*.yaml"))
    configs = tuple(load_model_config(p) for p in paths)
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate model names in {models_dir}: {names}")
    return configs


def model_configs(models_dir: Path | None = None) -> tuple[ModelConfig, ...]:
    return _load_all(str(models_dir or settings().models_dir))


def model_config(name: str) -> ModelConfig:
    for cfg in model_configs():
        if cfg.name == name:
            return cfg
    raise KeyError(f"no model named {name!r} in {settings().models_dir}")
