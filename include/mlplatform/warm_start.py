"""Warm task start: the processes that fork Airflow tasks import the heavy libraries once, before forking.

Airflow 3 on Linux starts each task with a bare ``os.fork()`` of the executor's worker process (the task SDK's
supervisor), with no exec, and a LocalExecutor worker or a Celery pool process is itself forked from the
scheduler or the Celery worker. Modules imported there are inherited by every task for free, instead of each
task paying 10-20 s to import mlflow, scikit-learn, evidently and the Snowflake connector.

``airflow_local_settings`` (imported by every Airflow process) calls :func:`install`. In the processes that
run tasks (``airflow scheduler`` with a local executor, ``airflow celery worker``) it registers an
``os.register_at_fork`` hook: on the first fork, the parent imports :data:`WARM_MODULES`. Other processes (the
api-server, the dag-processor, the triggerer, tests) import nothing, so DAG parsing stays light. Importing at
the first fork rather than at ``import airflow`` keeps the imports out of Airflow's own start-up, where they
could meet half-initialised Airflow modules.

Only imports happen before the fork: no thread pool, connection or OpenMP team exists yet (scikit-learn
starts its OpenMP threads at the first parallel fit, MLflow and the connector open connections on first use),
so nothing stateful is shared between tasks. ``MLOPS_WARM_START=false`` turns it off (for the side-by-side
benchmark, or to rule it out).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
import time
import warnings

WARM_START = "MLOPS_WARM_START"

# The third-party modules the stage jobs import lazily, then the jobs themselves.
WARM_MODULES = (
    "pandas", "pyarrow.parquet", "numpy", "scipy.stats", "scipy.spatial.distance",
    "sklearn.compose", "sklearn.ensemble", "sklearn.impute", "sklearn.linear_model", "sklearn.metrics",
    "sklearn.model_selection", "sklearn.pipeline", "sklearn.preprocessing", "skops.io",
    "mlflow", "mlflow.artifacts", "mlflow.models", "mlflow.sklearn", "mlflow.exceptions",
    "evidently", "evidently.presets", "evidently.core.report",
    "snowflake.connector", "airflow.providers.snowflake.hooks.snowflake",
    "airflow.providers.slack.hooks.slack_webhook",
    "mlplatform.ingest", "mlplatform.training", "mlplatform.scoring", "mlplatform.monitoring",
    "mlplatform.evidently_reports", "mlplatform.promotion",
)

log = logging.getLogger(__name__)
_warmed = False


def enabled(environ=os.environ) -> bool:
    return environ.get(WARM_START, "true").strip().lower() not in ("0", "false", "no", "off")


def forks_tasks(argv: list[str]) -> bool:
    """True for the Airflow commands whose process forks task processes: the scheduler (whose local executor
    forks its workers from it) and a Celery worker (whose pool processes fork the tasks)."""
    words = [os.path.basename(a) for a in argv[:3]]
    if not words or not words[0].startswith("airflow"):
        return False
    return words[1:2] == ["scheduler"] or words[1:3] == ["celery", "worker"]


def warm_up(modules: tuple[str, ...] = WARM_MODULES) -> list[str]:
    """Import ``modules`` once per process; returns those that failed (logged, never raised: a task that needs
    a failed module imports it itself and shows the real error)."""
    global _warmed
    if _warmed:
        return []
    _warmed = True
    started, failed = time.monotonic(), []
    with warnings.catch_warnings():
        # skops scans loaded modules at import, touching each deprecated Airflow alias once: ~1000 warnings
        # that say nothing about the platform.
        warnings.simplefilter("ignore")
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the scheduler
                failed.append(name)
                log.warning("warm start: could not import %s: %s", name, exc)
    log.info("warm start: imported %d modules in %.1f s", len(modules) - len(failed), time.monotonic() - started)
    heartbeat_from_execution_start()
    return failed


def heartbeat_from_execution_start() -> None:
    """Give a job its first heartbeat when it starts executing, not when its object was built.

    The scheduler builds its Job (stamping its first heartbeat) before it forks its log server, the first fork,
    where the warm-up runs; the job starts executing after it, and Airflow keeps the old stamp. The warm-up's
    import time (30-50 s measured on a loaded machine) then counts as silence: the scheduler's first check for
    dead schedulers (a heartbeat older than 30 s by default) marks its own job failed and resets the tasks it
    has just queued, killing them (tests/faults/test_scheduler_restart.py saw it at every start)."""
    from airflow.jobs.job import Job
    from airflow.sdk import timezone

    prepare = Job.prepare_for_execution
    if getattr(prepare, "heartbeat_at_start", False):
        return

    @functools.wraps(prepare)
    def prepare_for_execution(self, *args, **kwargs):
        self.latest_heartbeat = timezone.utcnow()
        return prepare(self, *args, **kwargs)

    prepare_for_execution.heartbeat_at_start = True
    Job.prepare_for_execution = prepare_for_execution


def install(argv: list[str] | None = None) -> bool:
    """Register the warm-up for this process if it forks tasks; returns whether it did."""
    if not enabled() or not forks_tasks(sys.argv if argv is None else argv):
        return False
    # A library that registers a before/after_in_parent pair of fork hooks while our hook imports it would see
    # its after_in_parent run without its before (filelock does, and complains). Importing it first registers
    # its pair ahead of ours, so both run at every fork.
    importlib.import_module("filelock")
    os.register_at_fork(before=warm_up)
    return True
