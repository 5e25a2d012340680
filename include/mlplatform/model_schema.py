"""The schema of a model YAML file: strict, so a mistake is an error naming its key, never a default.

``validate(raw)`` checks a parsed file in two passes and returns every problem as a
``Problem(loc, message)``, ``loc`` being the key path (``("training", "window_days")``):

1. structure, types and ranges, with pydantic v2: unknown keys are refused at every level (a
   misspelt ``gates:`` is an error), counts and days must be positive integers, probabilities lie in
   (0, 1), days are real dates, names are safe identifiers, the cron expression parses;
2. references between sections, once the structure holds: every column a key, feature, target,
   segment or entity names must be declared in a contract (context columns with the context's
   prefix), ranges are ordered (end date after start date, ``rows.min <= rows.max``, ...).

Optional keys default to ``None`` here, meaning "not set": ``config.py`` builds the runtime objects
from ``model_dump(exclude_unset=True)``, so their defaults stay in one place, the dataclasses.

This module imports neither ``config`` nor ``features`` at import time (both import ``config``);
the transforms are looked up when a file is checked.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any, Callable, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from mlplatform.contracts import DTYPE_KINDS
from mlplatform.dates import is_ds
from mlplatform.drift_policy import DriftPolicy

# Model families the training module can build (see mlplatform.training.FAMILIES).
MODEL_FAMILIES = ("hist_gradient_boosting", "logistic_regression")
SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")  # [DB.][SCHEMA.]NAME
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # becomes DAG ids, Asset names, MLflow names and lake paths
FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPERATORS = (">", ">=", "<", "<=", "==")
FEATURE_KINDS = ("numeric", "categorical")
CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")  # Airflow's presets


class Problem(NamedTuple):
    loc: tuple[str | int, ...]
    message: str


# -- value types: each check names what it expected and what it got -------------------------------------
def _checked(test: Callable[[Any], bool], expected: str, convert: Callable[[Any], Any] = lambda v: v):
    def validate(value):
        if not test(value):
            raise ValueError(f"must be {expected} (got {value!r})")
        return convert(value)

    return PlainValidator(validate)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _matches(pattern: re.Pattern) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, str) and bool(pattern.fullmatch(value))  # "$" alone allows a final \n


def _one_of(choices) -> PlainValidator:
    return _checked(lambda v: isinstance(v, str) and v in choices, f"one of {', '.join(map(repr, choices))}")


def _is_day(value) -> bool:
    if isinstance(value, datetime):
        return False
    return isinstance(value, date) or is_ds(value)


def _to_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _is_cron(value) -> bool:
    if not isinstance(value, str):
        return False
    if value in CRON_PRESETS:
        return True
    from croniter import croniter

    return len(value.split()) == 5 and croniter.is_valid(value)


def _transform(value) -> str:
    from mlplatform.features import TRANSFORMS  # features imports config, which imports this module

    if not (isinstance(value, str) and value in TRANSFORMS):
        raise ValueError(f"must be one of {', '.join(map(repr, sorted(TRANSFORMS)))} (got {value!r})")
    return value


def _is_key(value) -> bool:
    columns = [value] if isinstance(value, str) else value
    return isinstance(columns, list) and bool(columns) and all(_matches(COLUMN_NAME)(c) for c in columns)


def _is_categories(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) or _is_number(v) for v in value)


def _is_grid(value) -> bool:
    return isinstance(value, list) and bool(value)


PositiveInt = Annotated[int, _checked(lambda v: _is_int(v) and v > 0, "a positive integer")]
NonNegativeInt = Annotated[int, _checked(lambda v: _is_int(v) and v >= 0, "an integer >= 0")]
Folds = Annotated[int, _checked(lambda v: _is_int(v) and v >= 2, "an integer >= 2")]
Number = Annotated[float, _checked(_is_number, "a number")]
OptionalNumber = Annotated[float | None, _checked(lambda v: v is None or _is_number(v), "a number or null")]
NonNegativeNumber = Annotated[float, _checked(lambda v: _is_number(v) and v >= 0, "a number >= 0")]
Probability = Annotated[float, _checked(lambda v: _is_number(v) and 0 < v < 1, "a probability between 0 and 1, "
                                                                                 "both excluded")]
Share = Annotated[float, _checked(lambda v: _is_number(v) and 0 < v <= 1, "a share in (0, 1]")]
UnitInterval = Annotated[float, _checked(lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0 to 1")]
Gain = Annotated[float, _checked(lambda v: _is_number(v) and -1 <= v <= 1, "a number from -1 to 1")]
Bool = Annotated[bool, _checked(lambda v: isinstance(v, bool), "true or false")]
Text = Annotated[str, _checked(lambda v: isinstance(v, str), "a string")]
Table = Annotated[str, _checked(_matches(SQL_IDENTIFIER), "a plain SQL identifier such as DB.SCHEMA.TABLE")]
Column = Annotated[str, _checked(_matches(COLUMN_NAME), "a plain SQL column name (letters, digits, _ or $)")]
OptionalColumn = Annotated[str | None, _checked(lambda v: v is None or _matches(COLUMN_NAME)(v),
                                                "a plain SQL column name or null")]
Key = Annotated[str | list[str], _checked(_is_key, "a column name or a non-empty list of column names")]
ModelName = Annotated[str, _checked(_matches(MODEL_NAME), "at most 64 lower-case letters, digits and "
                                                          "underscores, starting with a letter")]
FeatureName = Annotated[str, _checked(_matches(FEATURE_NAME), "a name of letters, digits and underscores")]
Family = Annotated[str, _one_of(MODEL_FAMILIES)]
DType = Annotated[str, _one_of(tuple(DTYPE_KINDS))]
Operator = Annotated[str, _one_of(OPERATORS)]
Kind = Annotated[str, _one_of(FEATURE_KINDS)]
Transform = Annotated[str, PlainValidator(_transform)]
Day = Annotated[date, _checked(_is_day, "a date written YYYY-MM-DD", _to_date)]
OptionalDay = Annotated[date | None, _checked(lambda v: v is None or _is_day(v), "a date written YYYY-MM-DD or null",
                                              lambda v: v if v is None else _to_date(v))]
Cron = Annotated[str, _checked(_is_cron, f"a five-field cron expression or one of {', '.join(CRON_PRESETS)}")]
Categories = Annotated[list, _checked(_is_categories, "a non-empty list of values")]
Grid = Annotated[list, _checked(_is_grid, "a non-empty list of values to try")]
Params = Annotated[dict, _checked(lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
                                  "a mapping of parameter names to values")]


# -- sections ------------------------------------------------------------------------------------------
class Section(BaseModel):
    """Unknown keys are errors; a key not given stays unset (None here, the runtime default later)."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RowBounds(Section):
    min: NonNegativeInt = None
    max: PositiveInt = None


class ColumnSpec(Section):
    dtype: DType
    nullable: Bool = None
    min: OptionalNumber = None
    max: OptionalNumber = None
    categories: Categories = None


class ContractSpec(Section):
    key: Key = None  # default: the source's key
    rows: RowBounds = None
    columns: Annotated[dict[Column, ColumnSpec], Field(min_length=1)]
    partition_column: OptionalColumn = None  # a declared `date` column naming each row's day


class SourceSpec(Section):
    table: Table
    key: Column
    event_time: Column
    contract: ContractSpec


class LabelsSpec(Section):
    table: Table
    key: Column
    available_at: Column
    delay_days: NonNegativeInt = None
    contract: ContractSpec


class ContextSpec(Section):
    table: Table
    join_on: Column
    observed_at: Column
    lookback_hours: PositiveInt
    prefix: Column
    contract: ContractSpec


class TargetSpec(Section):
    name: FeatureName
    column: Column
    operator: Operator
    threshold: Number


class FeatureSpec(Section):
    name: FeatureName
    column: Column
    kind: Kind
    transform: Transform = None
    drift: Bool = None


class SearchSpec(Section):
    budget: NonNegativeInt = None
    cv_folds: Folds = None
    seed: NonNegativeInt = None
    families: dict[Family, dict[str, Grid]] = None


class TrainingSpec(Section):
    window_days: PositiveInt
    holdout_days: PositiveInt
    min_training_rows: PositiveInt
    family: Family = None
    params: Params = None
    search: SearchSpec = None


class ThresholdsSpec(Section):
    decision_threshold: Probability
    reference_rows: PositiveInt


class GateSpec(Section):
    min_effect: Gain = None
    min_holdout_rows: PositiveInt = None
    max_brier_increase: NonNegativeNumber = None
    segment_min_rows: PositiveInt = None
    max_segment_auc_drop: UnitInterval = None
    bootstrap_samples: PositiveInt = None
    seed: NonNegativeInt = None
    segments: list[Column] = None


class DriftPolicySpec(Section):
    share: Share = None
    min_effect_size: NonNegativeNumber = None
    min_rows: NonNegativeInt = None
    drifted_days: PositiveInt = None
    window_days: PositiveInt = None
    cooldown_days: NonNegativeInt = None
    max_auc_drop: UnitInterval = None
    performance_days: PositiveInt = None
    min_labelled_rows: NonNegativeInt = None
    max_age_days: NonNegativeInt = None  # 0: no safety net


class ScheduleSpec(Section):
    ingest: Cron
    start_date: Day
    end_date: OptionalDay = None


class ModelFile(Section):
    name: ModelName
    description: Text = None
    owner: Text = None
    source: SourceSpec
    labels: LabelsSpec
    context: ContextSpec = None
    target: TargetSpec
    entity_columns: list[Column] = None
    features: Annotated[list[FeatureSpec], Field(min_length=1)]
    training: TrainingSpec
    thresholds: ThresholdsSpec
    drift_policy: DriftPolicySpec = None
    gate: GateSpec = None
    schedule: ScheduleSpec


# -- checking ------------------------------------------------------------------------------------------
def validate(raw) -> tuple[ModelFile | None, list[Problem]]:
    """The validated file, or None, and every problem found (an empty list when the file is valid)."""
    if raw is None:
        return None, [Problem((), "the file is empty; a model file is a mapping with the keys "
                                  f"{', '.join(_required(ModelFile))}")]
    if not isinstance(raw, dict):
        return None, [Problem((), f"must be a mapping of model settings (got {type(raw).__name__})")]
    try:
        spec = ModelFile.model_validate(raw)
    except ValidationError as exc:
        return None, [_problem(error) for error in exc.errors()]
    return spec, _references(spec)


def _required(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]


def _problem(error: dict) -> Problem:
    loc, kind, value = tuple(p for p in error["loc"] if p != "[key]"), error["type"], error.get("input")
    if kind == "value_error":
        return Problem(loc, str(error["ctx"]["error"]))
    if kind == "missing":
        return Problem(loc, "required key is missing")
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return Problem(loc, f"unknown key ({hint})")
    if kind in ("model_type", "dict_type"):
        return Problem(loc, f"must be a mapping (got {value!r})")
    if kind == "list_type":
        return Problem(loc, f"must be a list (got {value!r})")
    if kind == "too_short":
        return Problem(loc, "must not be empty")
    return Problem(loc, f"{error['msg']} (got {value!r})")


def _fields_at(loc: tuple) -> list[str]:
    """The keys the schema allows at ``loc`` (a path to a section), for hints on unknown keys."""
    annotation: Any = ModelFile
    for part in loc:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[part].annotation
        else:  # list[X] (part is an index) or dict[K, X] (part is a key): step into X
            annotation = typing.get_args(annotation)[-1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _references(spec: ModelFile) -> list[Problem]:
    found: list[Problem] = []
    sources = [("source", spec.source, (spec.source.key, spec.source.event_time), ("key", "event_time")),
               ("labels", spec.labels, (spec.labels.key, spec.labels.available_at), ("key", "available_at"))]
    if spec.context:
        ctx = spec.context
        sources.append(("context", ctx, (ctx.join_on, ctx.observed_at), ("join_on", "observed_at")))
        if ctx.join_on not in spec.source.contract.columns:
            found.append(Problem(("context", "join_on"), f"{ctx.join_on!r} is not a column of source.contract"))
    for section, source, columns, keys in sources:
        found += _contract_problems(section, source.contract, dict(zip(keys, columns)))
    found += _feature_problems(spec)
    available = _row_columns(spec)
    described = "a column of source.contract" + (f" or of context.contract (as {spec.context.prefix}<column>)"
                                                  if spec.context else "")
    for i, column in enumerate(spec.entity_columns or ()):
        if column not in available:
            found.append(Problem(("entity_columns", i), f"{column!r} is not {described}"))
    for i, column in enumerate((spec.gate.segments if spec.gate else None) or ()):
        if column not in available:
            found.append(Problem(("gate", "segments", i), f"{column!r} is not {described}"))
    if spec.target.column not in spec.labels.contract.columns:
        found.append(Problem(("target", "column"), f"{spec.target.column!r} is not a column of labels.contract"))
    training = spec.training
    if training.holdout_days >= training.window_days:
        found.append(Problem(("training", "holdout_days"), f"must be smaller than training.window_days "
                                                           f"({training.window_days}) (got {training.holdout_days})"))
    found += _drift_policy_problems(spec.drift_policy)
    schedule = spec.schedule
    if schedule.end_date is not None and schedule.end_date < schedule.start_date:
        found.append(Problem(("schedule", "end_date"), f"{schedule.end_date} is before schedule.start_date "
                                                       f"{schedule.start_date}"))
    return found


def _contract_problems(section: str, contract: ContractSpec, named: dict[str, str]) -> list[Problem]:
    where, found = (section, "contract"), []
    for key, column in named.items():
        if column not in contract.columns:
            found.append(Problem((section, key), f"{column!r} is not a column of {section}.contract"))
    keys = [contract.key] if isinstance(contract.key, str) else contract.key or []
    for column in keys:
        if column not in contract.columns:
            found.append(Problem((*where, "key"), f"{column!r} is not a column of {section}.contract"))
    if contract.rows and None not in (contract.rows.min, contract.rows.max) and contract.rows.min > contract.rows.max:
        found.append(Problem((*where, "rows", "max"), f"must be at least rows.min ({contract.rows.min}) "
                                                      f"(got {contract.rows.max})"))
    for name, rule in contract.columns.items():
        if None not in (rule.min, rule.max) and rule.min > rule.max:
            found.append(Problem((*where, "columns", name, "max"), f"must be at least min ({rule.min}) "
                                                                   f"(got {rule.max})"))
    partition = contract.partition_column
    if partition is not None:
        rule = contract.columns.get(partition)
        if rule is None or rule.dtype != "date":
            found.append(Problem((*where, "partition_column"),
                                 f"{partition!r} must be a column of {section}.contract with dtype date"))
    return found


def _row_columns(spec: ModelFile) -> set[str]:
    """The columns of an ingested feature row: the source's, and the context's under its prefix."""
    columns = set(spec.source.contract.columns)
    if spec.context:
        columns |= {f"{spec.context.prefix}{c}" for c in spec.context.contract.columns}
    return columns


def _feature_problems(spec: ModelFile) -> list[Problem]:
    found, seen = [], set()
    available = _row_columns(spec)
    outcomes = set(spec.labels.contract.columns) - {spec.labels.key}
    for i, feature in enumerate(spec.features):
        if feature.name in seen or feature.name == spec.target.name:
            found.append(Problem(("features", i, "name"), f"{feature.name!r} is used twice (features and target "
                                                          f"need distinct names)"))
        seen.add(feature.name)
        if feature.column in outcomes:
            found.append(Problem(("features", i, "column"), f"label column {feature.column!r} is used as a feature; "
                                                            f"outcomes must never be features"))
        elif feature.column not in available:
            context = f" or of context.contract (as {spec.context.prefix}<column>)" if spec.context else ""
            found.append(Problem(("features", i, "column"),
                                 f"{feature.column!r} is not a column of source.contract{context}"))
    return found


def _drift_policy_problems(section: DriftPolicySpec | None) -> list[Problem]:
    policy = {**asdict(DriftPolicy()), **(section.model_dump(exclude_unset=True) if section else {})}
    found = []
    if policy["drifted_days"] > policy["window_days"]:
        found.append(Problem(("drift_policy", "drifted_days"), f"must be at most drift_policy.window_days "
                                                               f"({policy['window_days']}) (got {policy['drifted_days']})"))
    if policy["max_age_days"] and policy["max_age_days"] < policy["cooldown_days"]:
        found.append(Problem(("drift_policy", "max_age_days"), f"must be 0 (off) or at least drift_policy.cooldown_days "
                                                               f"({policy['cooldown_days']}) (got {policy['max_age_days']})"))
    return found


def key_path(loc: tuple) -> str:
    """``("features", 3, "transform")`` -> ``features[3].transform``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
