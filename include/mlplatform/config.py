"""Typed settings from the environment and model definitions from YAML.

Everything hangs off one data directory and one lake URI, so a deployment changes
environment variables, never code.

Model files are checked against the strict schema of ``mlplatform.model_schema`` before the
runtime objects below are built, and each file stands alone:

- ``load_models()`` returns the valid configs and, separately, one ``ModelConfigError`` per broken
  file, naming the file and every key path at fault. ``model_configs()`` gives the valid ones and
  never raises for another file's mistake; ``model_config(name)`` of a broken model raises its
  file's error.
- The DAG factories build DAGs for the valid configs only. A broken file must still be seen in
  Airflow, and an import error belongs to a DAG file, so ``dags/model_config_errors.py`` builds no
  DAG and raises ``raise_for_config_errors()``: Airflow lists exactly one import error, on that
  file, naming every broken model file and key path, while the other models' DAGs load.
- The cache follows the files: it is keyed on each YAML file's name and content, and rebuilt when
  one changes, so a long-lived process (the api-server's reports page) sees a new, changed or
  removed model file at its next call.

``python -m mlplatform.config check [FILES...]`` validates files (default: the models directory)
without importing Airflow, prints each error and exits 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from mlplatform import model_schema
from mlplatform.contracts import Contract
from mlplatform.drift_policy import DriftPolicy
from mlplatform.gates import GatePolicy
from mlplatform.model_schema import MODEL_FAMILIES, SQL_IDENTIFIER  # noqa: F401 (MODEL_FAMILIES: for training)

# One-slot Airflow pool: promotions and rollbacks of every model run one at a time (created at setup).
PROMOTION_POOL = "model_promotion"

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    lake_uri: str
    models_dir: Path
    mlflow_tracking_uri: str
    warehouse_conn_id: str
    # An external stage whose URL is the lake root (e.g. FLIGHTS.ML.LAKE on s3://bucket/prefix/): the warehouse
    # bulk-loads committed partitions straight from the lake. None: loads PUT the files to a temporary stage.
    warehouse_lake_stage: str | None
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
            warehouse_lake_stage=os.environ.get("MLOPS_WAREHOUSE_LAKE_STAGE") or None,
            slack_conn_id=os.environ.get("MLOPS_SLACK_CONN_ID", "slack_alerts"),
            outbox_path=Path(os.environ.get("MLOPS_OUTBOX", data_dir / "outbox" / "slack.jsonl")),
            airflow_url=os.environ.get("MLOPS_AIRFLOW_URL", "http://127.0.0.1:8080"),
        )


def settings() -> Settings:
    return Settings.from_env()


def checked_identifier(name: str) -> str:
    """Table and column names cannot be bind parameters, so they must be plain identifiers."""
    if not isinstance(name, str) or not SQL_IDENTIFIER.fullmatch(name):
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


# -- loading -------------------------------------------------------------------------------------------
class ModelConfigError(ValueError):
    """A model file that cannot be used: every problem found, each naming the file and the key path."""

    def __init__(self, path: Path, messages: list[str], model: str | None = None):
        self.path, self.file, self.model, self.messages = Path(path), display_path(path), model, tuple(messages)
        self.lines = tuple(f"{self.file}: {message}" for message in messages)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class ModelFiles:
    """What a set of model files holds: the valid configs, and the error of each broken file."""
    configs: tuple[ModelConfig, ...]
    errors: tuple[ModelConfigError, ...]


def display_path(path: Path) -> str:
    """Relative to the repository when inside it (``include/models/x.yaml``), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(path, [f"cannot be read: {exc}"]) from None


def _parse_yaml(path: Path, text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelConfigError(path, [f"not valid YAML: {' '.join(str(exc).split())}"]) from None


def _claimed_name(raw, path: Path) -> str:
    """The model a file means to define, even when it is broken (so ``model_config`` can name its error)."""
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else Path(path).stem


def load_model_config(path: Path, text: str | None = None) -> ModelConfig:
    """One model file (``text``: its content, if already read), checked against the schema;
    ModelConfigError (a ValueError) on any problem."""
    raw = _parse_yaml(path, _read_text(path) if text is None else text)
    spec, found = model_schema.validate(raw)
    if found:
        raise ModelConfigError(path, [_message(p) for p in found], _claimed_name(raw, path))
    try:
        return _build(spec.model_dump(exclude_unset=True))
    except (ValueError, TypeError, KeyError) as exc:  # the schema should have caught it: still name the file
        raise ModelConfigError(path, [f"{type(exc).__name__}: {exc}"], spec.name) from exc


def _message(problem: model_schema.Problem) -> str:
    where = model_schema.key_path(problem.loc)
    return f"{where}: {problem.message}" if where else problem.message


def load_files(paths, texts: dict[Path, str] | None = None) -> ModelFiles:
    """Each file on its own; a model name claimed by several files is an error in all but one of them:
    the file named after the model (``<name>.yaml``), else the first in order."""
    loaded: dict[Path, ModelConfig] = {}
    errors: list[ModelConfigError] = []
    for path in map(Path, paths):
        try:
            loaded[path] = load_model_config(path, (texts or {}).get(path))
        except ModelConfigError as exc:
            errors.append(exc)
    owners: dict[str, Path] = {}
    for path, cfg in sorted(loaded.items(), key=lambda item: item[0].stem != item[1].name):
        if cfg.name in owners:
            errors.append(ModelConfigError(path, [f"name: model name {cfg.name!r} is already defined in "
                                                  f"{display_path(owners[cfg.name])}"], cfg.name))
        else:
            owners[cfg.name] = path
    configs = tuple(cfg for path, cfg in loaded.items() if owners.get(cfg.name) == path)
    return ModelFiles(configs, tuple(sorted(errors, key=lambda e: str(e.path))))


def model_files(models_dir: Path) -> list[Path]:
    return sorted(Path(models_dir).glob("*.yaml"))


def _contents(paths: list[Path]) -> dict[Path, str | None]:
    """Each file's text; None when it cannot be read (loading it then reports why)."""
    texts: dict[Path, str | None] = {}
    for path in paths:
        try:
            texts[path] = path.read_text()
        except FileNotFoundError:  # removed while listing: gone
            continue
        except (OSError, UnicodeDecodeError):
            texts[path] = None
    return texts


# models dir -> (the files' names and contents when last parsed, what they held)
_CACHE: dict[str, tuple[tuple, ModelFiles]] = {}


def load_models(models_dir: Path | None = None) -> ModelFiles:
    """The models directory's files, parsed again only when a file was added, removed or changed.

    The cache key is the files' contents, not their mtimes: the files are a few KB, reading them costs
    about what a stat does, and an edit within the file system's timestamp granularity is not missed."""
    directory = str(models_dir or settings().models_dir)
    texts = _contents(model_files(Path(directory)))
    key = tuple((path.name, text) for path, text in texts.items())
    cached = _CACHE.get(directory)
    if cached is None or cached[0] != key:
        cached = (key, load_files(list(texts), {p: t for p, t in texts.items() if t is not None}))
        _CACHE[directory] = cached
    return cached[1]


def model_configs(models_dir: Path | None = None) -> tuple[ModelConfig, ...]:
    """The valid models; a broken file is left out (see ``config_errors``), never raised here."""
    return load_models(models_dir).configs


def config_errors(models_dir: Path | None = None) -> tuple[ModelConfigError, ...]:
    return load_models(models_dir).errors


def model_config(name: str) -> ModelConfig:
    loaded = load_models()
    for cfg in loaded.configs:
        if cfg.name == name:
            return cfg
    for error in loaded.errors:
        if error.model == name:
            raise ModelConfigError(error.path, list(error.messages), error.model)  # the cached one stays untouched
    raise KeyError(f"no model named {name!r} in {settings().models_dir}")


class InvalidModelFiles(ValueError):
    def __init__(self, errors: tuple[ModelConfigError, ...]):
        self.errors = errors
        lines = [line for error in errors for line in error.lines]
        super().__init__(f"{len(errors)} model file(s) failed validation; their models' DAGs are not built, "
                         "the other models' are:\n" + "\n".join(lines))


def raise_for_config_errors(models_dir: Path | None = None) -> None:
    """For the DAG folder: one import error in Airflow naming every broken model file and key path."""
    errors = config_errors(models_dir)
    if errors:
        raise InvalidModelFiles(errors)


# -- building the runtime objects from a validated file -----------------------------------------------
def _build(raw: dict) -> ModelConfig:
    """``raw``: the validated file as written (unset keys absent, so the dataclasses' defaults apply).
    Each contract mapping goes to ``Contract.from_config`` whole, ``partition_column`` included."""
    source, labels = raw["source"], raw["labels"]
    schedule = raw["schedule"]
    gate = raw.get("gate", {})
    return ModelConfig(
        name=raw["name"],
        description=raw.get("description", ""),
        owner=raw.get("owner", "mlops"),
        source=Source(table=source["table"], key=source["key"], event_time=source["event_time"],
                      contract=Contract.from_config(f"{raw['name']}.features", source["key"], source["event_time"],
                                                    source["contract"])),
        labels=LabelSource(table=labels["table"], key=labels["key"], available_at=labels["available_at"],
                           delay_days=labels.get("delay_days", 0),
                           contract=Contract.from_config(f"{raw['name']}.labels", labels["key"],
                                                         labels["available_at"], labels["contract"])),
        target=Target(**raw["target"]),
        features=tuple(Feature(**f) for f in raw["features"]),
        training=_training(raw["training"]),
        thresholds=Thresholds(**raw["thresholds"]),
        gate=GatePolicy(**{**gate, "segments": tuple(gate.get("segments", ()))}),
        drift_policy=DriftPolicy(**raw.get("drift_policy", {})),
        schedule=Schedule(ingest=schedule["ingest"], start_date=schedule["start_date"],
                          end_date=schedule.get("end_date")),
        entity_columns=tuple(raw.get("entity_columns", ())),
        context=_context(raw["name"], raw["context"]) if raw.get("context") else None,
    )


def _training(raw: dict) -> Training:
    return Training(**{**raw, "search": Search(**raw.get("search", {}))})


def _context(model: str, ctx: dict) -> Context:
    return Context(table=ctx["table"], join_on=ctx["join_on"], observed_at=ctx["observed_at"],
                   lookback_hours=ctx["lookback_hours"], prefix=ctx["prefix"],
                   contract=Contract.from_config(f"{model}.context", ctx["join_on"], ctx["observed_at"],
                                                 ctx["contract"]))


# -- python -m mlplatform.config check [FILES...] ----------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlplatform.config",
                                     description="Validate model files against the model-config schema.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate model files; exit status 1 on any error")
    check.add_argument("files", nargs="*", type=Path,
                       help="model files or directories of them (default: the models directory)")
    args = parser.parse_args(argv)
    paths, missing = [], []
    for target in args.files or [settings().models_dir]:
        if target.is_dir():
            paths += model_files(target)
        elif target.exists():
            paths.append(target)
        else:
            missing.append(ModelConfigError(target, ["no such file or directory"]))
    result = load_files(paths)
    errors = [*missing, *result.errors]
    for error in errors:
        print(error)
    print(f"{len(paths) + len(missing)} model file(s) checked, {len({e.path for e in errors})} with errors",
          file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
