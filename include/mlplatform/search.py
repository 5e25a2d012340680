"""Hyper-parameter search across model families, scored by time-series cross-validation.

Folds are expanding windows over whole days, oldest first: each fold trains on every day before
its validation days, so no candidate is ever scored on data older than what it trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlplatform.config import ModelConfig, Search

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Candidate:
    family: str
    params: dict
    fold_auc: tuple[float, ...] = ()

    @property
    def mean_auc(self) -> float:
        return sum(self.fold_auc) / len(self.fold_auc)

    @property
    def label(self) -> str:
        return f"{self.family}(" + ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())) + ")"


def draw_candidates(search: Search, budget: int) -> list[Candidate]:
    """``budget`` candidates shared round-robin across families, each family's drawn without replacement."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    families = list(search.families)
    shares = {f: budget // len(families) + (i < budget % len(families)) for i, f in enumerate(families)}
    drawn = []
    for family, share in shares.items():
        grid = {name: list(values) for name, values in search.families[family].items()}
        size = len(ParameterGrid(grid))
        params = ParameterSampler(grid, n_iter=min(share, size), random_state=search.seed)
        drawn += [Candidate(family, _plain(p)) for p in params]
    return drawn


def _plain(params: dict) -> dict:
    """numpy scalars from the sampler become Python numbers, so they log and serialise cleanly."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in params.items()}


def day_folds(frame: "pd.DataFrame", time_column: str, n_folds: int) -> list[tuple["pd.Index", "pd.Index"]]:
    """Expanding-window folds over whole calendar days: (train rows, validation rows) per fold."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import TimeSeriesSplit

    days = pd.to_datetime(frame[time_column]).dt.normalize()
    distinct = np.array(sorted(days.unique()))
    if len(distinct) <= n_folds:
        raise ValueError(f"need more than {n_folds} days for {n_folds} time-series folds, got {len(distinct)}")
    folds = []
    for train_days, valid_days in TimeSeriesSplit(n_splits=n_folds).split(distinct):
        folds.append((frame.index[days.isin(distinct[train_days])], frame.index[days.isin(distinct[valid_days])]))
    return folds


def cross_validate(frame: "pd.DataFrame", cfg: ModelConfig, candidate: Candidate,
                   folds: list[tuple["pd.Index", "pd.Index"]]) -> Candidate:
    from mlplatform.training import evaluate, fit

    scores = []
    for train_rows, valid_rows in folds:
        model = fit(frame.loc[train_rows], cfg, candidate.family, candidate.params)
        scores.append(evaluate(model, frame.loc[valid_rows], cfg)["roc_auc"])
    return Candidate(candidate.family, candidate.params, tuple(scores))


def run_search(frame: "pd.DataFrame", cfg: ModelConfig, budget: int) -> list[Candidate]:
    """Every candidate with its fold scores, best first. With budget 0, the configured default alone, unscored."""
    if budget <= 0 or not cfg.training.search.families:
        return [Candidate(cfg.training.family, dict(cfg.training.params))]
    folds = day_folds(frame, cfg.source.event_time, cfg.training.search.cv_folds)
    scored = [cross_validate(frame, cfg, c, folds) for c in draw_candidates(cfg.training.search, budget)]
    return sorted(scored, key=lambda c: c.mean_auc, reverse=True)
