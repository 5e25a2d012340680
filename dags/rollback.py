"""
### Rollback

Moves `champion` back to an earlier version: `version` is a version number, or `previous` for the
version that was champion before the current one (per the promotion log). The move goes through
the same compare-and-set and pool as promotions, is appended to the promotion log with who asked
and why, and is announced on Slack. Scoring picks the new champion up on its next run.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from mlplatform.config import PROMOTION_POOL, ModelConfig, model_configs
from mlplatform.orchestration import TAGS, actor, airflow_run, default_args, fail_fast


def build(cfg: ModelConfig):
    @dag(dag_id=f"{cfg.name}__rollback", schedule=None, start_date=datetime(2013, 1, 1), catchup=False,
         max_active_runs=1, default_args=default_args(), tags=[*TAGS, cfg.name, "rollback"], doc_md=__doc__,
         params={
             "version": Param("previous", type="string", pattern=r"^(previous|[0-9]+)$", title="Version",
                              description='Version to make champion, or "previous"'),
             "reason": Param("rollback requested", type="string", minLength=3, title="Reason",
                             description="Why (kept in the log)"),
         })
    def rollback():
        # Transient errors are retried (a retry finishes its own logged move); a refused move fails at once.
        @task(pool=PROMOTION_POOL)
        def move_champion_back() -> dict:
            from mlplatform import promotion

            params = get_current_context()["params"]
            with fail_fast(*promotion.FAIL_FAST):
                return promotion.rollback(cfg.name, str(params["version"]), actor=actor(), reason=params["reason"],
                                          airflow_run=airflow_run())

        move_champion_back()

    return rollback()


for _cfg in model_configs():
    build(_cfg)
