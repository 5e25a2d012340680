"""
### Monitor

Runs when new predictions land. For each new day it writes an Evidently data-drift and
data-quality report (HTML plus metrics as JSON) under `reports/<model>/ds=<day>/`, then applies
the model's debounced drift policy (`drift_policy` in the model YAML) and branches three ways:
- `request_retrain`: Slack alert, and a `<model>.retrain_request` Asset event that triggers training
  with reason `drift`, `performance` or `age` (the optional `max_age_days` safety net);
- `alert_only`: drift seen but not confirmed (or in cooldown): Slack alert, no retraining;
- `nothing_to_do`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task

from mlplatform.config import ModelConfig, model_configs
from mlplatform.dates import DS_PATTERN
from mlplatform.orchestration import TAGS, default_args, predictions_asset, retrain_request_asset, triggered_days


# No max_active_runs cap: with a cap, asset events arriving while a run is queued are stranded
# (apache/airflow#56050). Each day's job is independent and idempotent, so runs may overlap.
def build(cfg: ModelConfig):
    @dag(dag_id=f"{cfg.name}__monitor", schedule=[predictions_asset(cfg.name)], start_date=datetime(2013, 1, 1),
         catchup=False, default_args=default_args(), tags=[*TAGS, cfg.name, "monitor"],
         doc_md=__doc__, params={"ds": Param(None, type=["null", "string"], pattern=DS_PATTERN, format="date",
                                    title="Day", description="Day to report (YYYY-MM-DD)")})
    def monitor():
        @task
        def drift_reports() -> list[dict]:
            from mlplatform import monitoring

            return [monitoring.monitor(cfg.name, ds) for ds in triggered_days()]

        @task.branch
        def decide(outcomes: list[dict]) -> str:
            actions = {o["action"] for o in outcomes}
            return "request_retrain" if "retrain" in actions else "alert_only" if "alert" in actions else "nothing_to_do"

        @task(outlets=[retrain_request_asset(cfg.name)])
        def request_retrain(outcomes: list[dict], *, outlet_events) -> str:
            from mlplatform import alerts

            for outcome in outcomes:
                if outcome["action"] != "none":
                    alerts.drift_alert(cfg.name, outcome)
            newest = max((o for o in outcomes if o["action"] == "retrain"), key=lambda o: o["ds"])
            outlet_events[retrain_request_asset(cfg.name)].extra = {"cutoff_ds": newest["ds"],
                                                                   "reason": newest["reason"]}
            return newest["ds"]

        @task
        def alert_only(outcomes: list[dict]) -> None:
            from mlplatform import alerts

            for outcome in outcomes:
                if outcome["action"] == "alert":
                    alerts.drift_alert(cfg.name, outcome)

        @task
        def nothing_to_do() -> None:
            """No policy trigger: the run ends here."""

        outcomes = drift_reports()
        decide(outcomes) >> [request_retrain(outcomes), alert_only(outcomes), nothing_to_do()]

    return monitor()


for _cfg in model_configs():
    build(_cfg)
