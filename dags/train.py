"""
### Train

Builds an as-of training set from the lake (feature partitions before the cut-off, labels that
were available before it), searches hyper-parameters across model families with time-series
cross-validation (one MLflow child run per candidate under the training run), registers the best
as `challenger`, and judges it against `champion` on the same most recent holdout.
The `promote` task then moves `champion` through the promotion log's compare-and-set, in the
one-slot `model_promotion` pool, or posts the rejection.

Runs on a retrain request from the monitor, or by hand from the trigger form:
- **Cut-off day** (`cutoff_ds`): the as-of day (default: the run's logical date). It must be a labelled day
  in the lake (the form names them); any other fails the run at once, without retries;
- **Training window (days)** (`window_days`), **Search budget** (`search_budget`): training window and number
  of search candidates;
- **Force promotion** (`force_promote`): promote even if the gate refuses; recorded in the log as a manual
  promotion.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from mlplatform.config import PROMOTION_POOL, ModelConfig, model_configs
from mlplatform.dates import DS_PATTERN
from mlplatform.orchestration import (TAGS, actor, airflow_run, alert_on_failure, asset_event_day, default_args,
                                      fail_fast, logical_ds, retrain_request_asset)


def _request() -> tuple[str, str]:
    """(cut-off day, reason) from the newest retrain request, else from the trigger form."""
    context = get_current_context()
    events = [e for evs in context["triggering_asset_events"].values() for e in evs]
    if events:
        cutoff, newest = max(((asset_event_day(e, "cutoff_ds"), e) for e in events), key=lambda r: r[0])
        return cutoff, newest.extra.get("reason", "drift")
    params = context["params"]
    cutoff = params.get("cutoff_ds") or logical_ds()
    if not cutoff:
        raise ValueError("set the cutoff_ds param: the day whose 00:00 is the training cut-off")
    return cutoff, params.get("reason") or "manual"


def _cutoff_help(cfg: ModelConfig) -> str:
    from mlplatform.training import labelled_days_for_form

    return (f"The as-of day (YYYY-MM-DD); default: the logical date. It must be a labelled day: "
            f"{labelled_days_for_form(cfg.name)} (read when this DAG was last parsed).")


def build(cfg: ModelConfig):
    @dag(dag_id=f"{cfg.name}__train", schedule=[retrain_request_asset(cfg.name)], start_date=datetime(2013, 1, 1),
         catchup=False, max_active_runs=1, default_args=default_args(), tags=[*TAGS, cfg.name, "train"],
         doc_md=__doc__,
         params={
             "cutoff_ds": Param(None, type=["null", "string"], pattern=DS_PATTERN, format="date",
                                title="Cut-off day", description=_cutoff_help(cfg)),
             "reason": Param("manual", type="string",
                             enum=["manual", "schedule", "drift", "performance", "age", "initial"],
                             title="Reason", description="Why this training runs (kept on the MLflow run)"),
             "window_days": Param(cfg.training.window_days, type="integer", minimum=7, title="Training window (days)",
                                  description="Days of feature partitions before the cut-off to train on"),
             "search_budget": Param(cfg.training.search.budget, type="integer", minimum=0, maximum=100,
                                    title="Search budget",
                                    description="Hyper-parameter candidates to try (0: configured defaults only)"),
             "force_promote": Param(False, type="boolean", title="Force promotion",
                                    description="Promote even if the gate refuses (recorded as a manual promotion)"),
         })
    def train():
        def end_failed_training(context) -> None:
            from mlplatform import training

            training.end_failed_training(cfg.name, airflow_run(context))

        @task(on_failure_callback=[alert_on_failure, end_failed_training])
        def train_challenger() -> dict:
            from mlplatform import training

            cutoff, reason = _request()
            params = get_current_context()["params"]
            with fail_fast(*training.FAIL_FAST):  # a cut-off without labels: retrying cannot fix it
                return training.train_challenger(cfg.name, cutoff, reason, window_days=params.get("window_days"),
                                                 search_budget=params.get("search_budget"),
                                                 logical_date=logical_ds(), airflow_run=airflow_run())

        # Transient errors are retried; a stale decision or a compare-and-set conflict fails at once.
        @task(pool=PROMOTION_POOL)
        def promote(outcome: dict) -> dict:
            from mlplatform import promotion

            force = bool(get_current_context()["params"].get("force_promote"))
            with fail_fast(*promotion.FAIL_FAST):
                return promotion.promote(cfg.name, outcome, force=force, actor=actor())

        promote(train_challenger())

    return train()


for _cfg in model_configs():
    build(_cfg)
