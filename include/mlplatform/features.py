"""One feature definition, shared by training and scoring.

Features are declared in the model YAML as (name, source column, kind, transform).
Transforms are the small named functions below; a new model reuses them from config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlplatform.config import ModelConfig

if TYPE_CHECKING:
    import pandas as pd

MISSING_CATEGORY = "__missing__"


def _identity(col):
    return col


def _hhmm_to_hours(col):
    """1530 (hh:mm as an integer) -> 15.5 hours after midnight."""
    return (col // 100) + (col % 100) / 60.0


def _day_of_week(col):
    import pandas as pd

    return pd.to_datetime(col).dt.dayofweek


TRANSFORMS = {"identity": _identity, "hhmm_to_hours": _hhmm_to_hours, "day_of_week": _day_of_week}


def build_features(raw: "pd.DataFrame", cfg: ModelConfig) -> "pd.DataFrame":
    """Model inputs from raw source rows: the only way training and scoring derive features."""
    import pandas as pd

    missing = [f.column for f in cfg.features if f.column not in raw.columns]
    if missing:
        raise KeyError(f"raw rows lack the source columns {missing} needed by features of {cfg.name}")
    out = {}
    for feat in cfg.features:
        if feat.transform not in TRANSFORMS:
            raise KeyError(f"feature {feat.name}: unknown transform {feat.transform!r}; known: {sorted(TRANSFORMS)}")
        values = TRANSFORMS[feat.transform](raw[feat.column])
        if feat.kind == "categorical":
            out[feat.name] = values.astype("object").where(values.notna(), MISSING_CATEGORY).astype(str)
        else:
            out[feat.name] = pd.to_numeric(values, errors="raise").astype("float64")
    return pd.DataFrame(out, index=raw.index)


_OPERATORS = {">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq"}


def build_target(labels: "pd.DataFrame", cfg: ModelConfig) -> "pd.Series":
    """0/1 target, or NaN where the outcome has no value (e.g. a cancelled flight)."""
    col = labels[cfg.target.column].astype("float64")
    hit = getattr(col, _OPERATORS[cfg.target.operator])(cfg.target.threshold).astype("float64")
    return hit.where(col.notna()).rename(cfg.target.name)
