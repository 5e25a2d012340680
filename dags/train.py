"""
### Train

Builds an as-of training set from the lake (feature partitions before the cut-off, labels that
were available before it), trains, logs to MLflow, registers a version with the `challenger`
alias and moves `champion` to it when it beats the current champion on the same holdout.

Runs on a retrain request from the monitor, or by hand from the trigger form: set `cutoff_ds`
(the as-of date) and optionally `window_days`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from mlplatform.config import ModelConfig, model_configs
from mlplatform.orchestration import TAGS, default_args, logical_ds, retrain_request_asset


def _request() -> tuple[str, str]:
    """(cut-off day, reason) from the newest retrain request, else from the trigger form."""
    context = get_current_context()
    events = [e for evs in context["triggering_asset_events"].values() for e in evs]
    if events:
        newest = max(events, key=lambda e: e.extra.get("cutoff_ds", ""))
        return newest.extra["cutoff_ds"], newest.extra.get("reason", "drift")
    params = context["params"]
    cutoff = params.get("cutoff_ds") or logical_ds()
    if not cutoff:
        raise ValueError("set the cutoff_ds param: the day whose 00:00 is the training cut-off")
    return cutoff, params.get("reason") or "manual"


def build(cfg: ModelConfig):
    @dag(dag_id=f"{cfg.name}__train", schedule=[retrain_request_asset(cfg.name)], start_date=datetime(2013, 1, 1),
         catchup=False, max_active_runs=1, default_args=default_args(), tags=[*TAGS, cfg.name, "train"],
         doc_md=__doc__,
         params={
             "cutoff_ds": Param(None, type=["null", "string"], description="Training cut-off day (YYYY-MM-DD)"),
             "reason": Param("manual", type="string", enum=["manual", "schedule", "drift", "initial"]),
             "window_days": Param(cfg.training.window_days, type="integer", minimum=7),
         })
    def train():
        @task
        def train_and_gate() -> dict:
            from mlplatform import jobs

            cutoff, reason = _request()
            window = get_current_context()["params"].get("window_days")
            return jobs.train(cfg.name, cutoff, reason, window_days=window)

        train_and_gate()

    return train()


for _cfg in model_configs():
    build(_cfg)
