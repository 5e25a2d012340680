"""
### Ingest

Daily, per model, two independent tasks copy warehouse rows into versioned lake partitions
(data first, manifest last), each checked against its data contract first:
`ingest_labels` takes the outcomes that became available before the cut-off, and
`ingest_features` takes the day's scheduled rows with the weather observed before the
cut-off. A breach quarantines the batch and fails the task without retries. `ingest_features`
publishes the `<model>.features` Asset, which triggers scoring.

Backfill this DAG to replay history: each run only reads what existed at its logical date.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.timetables.trigger import CronTriggerTimetable

from mlplatform.config import ModelConfig, model_configs
from mlplatform.orchestration import TAGS, default_args, features_asset, logical_ds


def _fail_on_bad_data(job, model: str, ds: str) -> dict:
    from mlplatform.contracts import ContractViolation
    from mlplatform.warehouse import WarehouseTableMissing

    try:
        return job(model, ds)
    except (ContractViolation, WarehouseTableMissing) as exc:
        raise AirflowFailException(str(exc)) from exc  # retrying cannot fix bad data


def build(cfg: ModelConfig):
    start = datetime.combine(cfg.schedule.start_date, datetime.min.time())
    end = datetime.combine(cfg.schedule.end_date, datetime.min.time()) if cfg.schedule.end_date else None

    @dag(dag_id=f"{cfg.name}__ingest", schedule=CronTriggerTimetable(cfg.schedule.ingest, timezone="UTC"),
         start_date=start, end_date=end, catchup=False, max_active_runs=4, default_args=default_args(),
         tags=[*TAGS, cfg.name, "ingest"], doc_md=__doc__, description=f"Daily ingest for {cfg.name}")
    def ingest():
        @task
        def ingest_labels() -> dict:
            """Outcomes that became available before the cut-off (after the configured label delay)."""
            from mlplatform import ingest

            return _fail_on_bad_data(ingest.ingest_labels, cfg.name, logical_ds())

        @task(outlets=[features_asset(cfg.name)])
        def ingest_features(*, outlet_events) -> dict:
            """The day's scheduled rows with weather as of the cut-off; its Asset event triggers scoring."""
            from mlplatform import ingest

            result = _fail_on_bad_data(ingest.ingest_features, cfg.name, logical_ds())
            outlet_events[features_asset(cfg.name)].extra = {"days": [result["ds"]], **result}
            return result

        # Independent: a late or broken outcome feed must not stop the day's scoring.
        ingest_labels()
        ingest_features()

    return ingest()


for _cfg in model_configs():
    build(_cfg)
