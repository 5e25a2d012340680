"""
### Monitor

Runs when new predictions land. For each new day it writes an Evidently data-drift and
data-quality report (HTML plus metrics as JSON) under `reports/<model>/ds=<day>/`, then
branches: when the share of drifted columns reaches the model's threshold it sends a Slack
alert and requests retraining (the `<model>.retrain_request` Asset); otherwise it ends.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task

from mlplatform.config import ModelConfig, model_configs
from mlplatform.orchestration import TAGS, default_args, predictions_asset, retrain_request_asset, triggered_days


# No max_active_runs cap: with a cap, asset events arriving while a run is queued are stranded
# (apache/airflow#56050). Each day's job is independent and idempotent, so runs may overlap.
def build(cfg: ModelConfig):
    @dag(dag_id=f"{cfg.name}__monitor", schedule=[predictions_asset(cfg.name)], start_date=datetime(2013, 1, 1),
         catchup=False, default_args=default_args(), tags=[*TAGS, cfg.name, "monitor"],
         doc_md=__doc__, params={"ds": Param(None, type=["null", "string"], description="Day to report (YYYY-MM-DD)")})
    def monitor():
        @task
        def drift_reports() -> list[dict]:
            from mlplatform import jobs

            return [jobs.monitor(cfg.name, ds) for ds in triggered_days()]

        @task.branch
        def decide(outcomes: list[dict]) -> str:
            return "request_retrain" if any(o["retrain"] for o in outcomes) else "no_drift"

        @task(outlets=[retrain_request_asset(cfg.name)])
        def request_retrain(outcomes: list[dict], *, outlet_events) -> str:
            from mlplatform import jobs

            drifted = [o for o in outcomes if o["retrain"]]
            for outcome in drifted:
                jobs.alert_drift(cfg.name, outcome)
            cutoff = max(o["ds"] for o in drifted)
            outlet_events[retrain_request_asset(cfg.name)].extra = {"cutoff_ds": cutoff, "reason": "drift"}
            return cutoff

        @task
        def no_drift() -> None:
            """Nothing crossed the threshold: the run ends here."""

        outcomes = drift_reports()
        decide(outcomes) >> [request_retrain(outcomes), no_drift()]

    return monitor()


for _cfg in model_configs():
    build(_cfg)
