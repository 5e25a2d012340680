"""
### Score

Runs when new feature partitions land. Resolves `models:/<model>@champion` at run time (so an
alias moved by hand in the MLflow UI counts from the next run), scores each new day and writes
predictions, with the model version and input partition hash on every row, to the lake and to
the warehouse table `FLIGHTS.ML.PREDICTIONS`. Publishes `<model>.predictions`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlplatform.config import ModelConfig, model_configs
from mlplatform.dates import DS_PATTERN
from mlplatform.orchestration import TAGS, default_args, features_asset, predictions_asset, triggered_days


# No max_active_runs cap: with a cap, asset events arriving while a run is queued are stranded
# (apache/airflow#56050). Each day's job is independent and idempotent, so runs may overlap.
def build(cfg: ModelConfig):
    @dag(dag_id=f"{cfg.name}__score", schedule=[features_asset(cfg.name)], start_date=datetime(2013, 1, 1),
         catchup=False, default_args=default_args(), tags=[*TAGS, cfg.name, "score"],
         doc_md=__doc__, params={"ds": Param(None, type=["null", "string"], pattern=DS_PATTERN, format="date",
                                    title="Day", description="Day to score (YYYY-MM-DD)")})
    def score():
        @task(outlets=[predictions_asset(cfg.name)])
        def score_days(*, outlet_events) -> list[dict]:
            from mlplatform import scoring
            from mlplatform.registry import UntrustedModel

            try:
                results = [r for r in (scoring.score(cfg.name, ds) for ds in triggered_days()) if r]
            except UntrustedModel as exc:
                raise AirflowFailException(str(exc)) from exc  # retrying cannot make an artifact safe
            if not results:
                raise AirflowSkipException(f"{cfg.name} has no champion yet; nothing scored")
            outlet_events[predictions_asset(cfg.name)].extra = {"days": [r["ds"] for r in results]}
            return results

        score_days()

    return score()


for _cfg in model_configs():
    build(_cfg)
