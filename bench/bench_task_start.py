"""Start overhead of one platform task as Airflow records it, warm start against cold start, in one run.

    python bench/bench_task_start.py [--runs 5] [--rounds 2]

Starts Airflow (api-server, dag-processor, scheduler with the LocalExecutor) on free ports in a temporary
directory, with one DAG whose single task imports what the platform's stage tasks import
(``mlplatform.warm_start.WARM_MODULES``) and does nothing else. Each round runs the task ``--runs`` times with
a warm scheduler and ``--runs`` times with ``MLOPS_WARM_START=false`` (the scheduler restarted in between), so
both see the same machine load. Reports the median task duration as Airflow records it (the task instance's
start to end), the warm/cold ratio, and the median peak RSS of the task process in each mode (a forked task's
RSS counts the pages it shares with its warm worker, so this bounds the worker's own).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

from mlplatform.devstack.airflow_api import AirflowApi
from mlplatform.devstack.stack import (VENV_BIN, Component, free_port, prepare_airflow_db, stack_env, start,
                                       stop)

DAG_ID = "bench_task_start"
DAG_FILE = textwrap.dedent(f'''
    """One task that imports what the platform's tasks import, then returns."""
    import pendulum
    from airflow.sdk import dag, task


    @dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2013, 1, 1, tz="UTC"), catchup=False,
         max_active_runs=1)
    def bench_task_start():
        @task
        def platform_imports() -> int:
            import importlib
            import resource

            from mlplatform.warm_start import WARM_MODULES

            for name in WARM_MODULES:
                importlib.import_module(name)
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MB, this task process

        platform_imports()


    bench_task_start()
''')


def airflow_components(env: dict[str, str]) -> dict[str, Component]:
    airflow = str(VENV_BIN / "airflow")
    return {"api-server": Component("bench-api-server", int(env["AIRFLOW__API__PORT"]), [airflow, "api-server"]),
            "dag-processor": Component("bench-dag-processor", None, [airflow, "dag-processor"]),
            "scheduler": Component("bench-scheduler", None, [airflow, "scheduler"])}


def run_once(api: AirflowApi, run_id: str, timeout: float = 600) -> dict:
    api.trigger(DAG_ID, run_id, None, {})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tis = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
        if tis and tis[0]["state"] in ("success", "failed"):
            if tis[0]["state"] != "success":
                raise RuntimeError(f"{run_id}: the task failed; see the scheduler's logs")
            return tis[0]
        time.sleep(1)
    raise TimeoutError(f"{run_id} did not finish in {timeout}s")


def peak_rss_mb(api: AirflowApi, run_id: str) -> int:
    xcom = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/platform_imports/xcomEntries/return_value")
    return int(xcom["value"])


def measure(api: AirflowApi, label: str, runs: int, round_no: int) -> list[tuple[float, int]]:
    samples = []
    for i in range(runs):
        run_id = f"{label}-{round_no}-{i}"
        duration = float(run_once(api, run_id)["duration"])
        samples.append((duration, peak_rss_mb(api, run_id)))
        print(f"  {label} round {round_no} run {i}: {duration:.2f} s, peak RSS {samples[-1][1]} MB", flush=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-task-start-") as tmp:
        dags = Path(tmp) / "dags"
        dags.mkdir()
        (dags / "bench_task_start.py").write_text(DAG_FILE)
        ports = {"warehouse": free_port(), "mlflow": free_port(), "airflow": free_port()}
        env = {**stack_env(Path(tmp) / "data", ports), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
               "AIRFLOW__CORE__PARALLELISM": "2"}
        prepare_airflow_db(env)
        parts = airflow_components(env)
        start(parts["api-server"], env)
        start(parts["dag-processor"], env)
        results = {"warm": [], "cold": []}
        try:
            api = AirflowApi.local_admin(env["MLOPS_AIRFLOW_URL"], Path(env["AIRFLOW_HOME"]))
            api.wait_for_dags([DAG_ID])
            api.session.patch(f"{api.base_url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=30)
            for round_no in range(args.rounds):
                for label, warm in (("warm", "true"), ("cold", "false")):
                    mode_env = {**env, "MLOPS_WARM_START": warm}
                    start(parts["scheduler"], mode_env)
                    try:
                        results[label] += measure(api, label, args.runs, round_no)
                    finally:
                        stop(parts["scheduler"], mode_env)
        finally:
            stop(parts["dag-processor"], env)
            stop(parts["api-server"], env)

    warm, cold = (statistics.median(d for d, _ in results[mode]) for mode in ("warm", "cold"))
    warm_rss, cold_rss = (statistics.median(r for _, r in results[mode]) for mode in ("warm", "cold"))
    print(f"\ntask duration as Airflow records it, median of {len(results['warm'])} runs each:")
    print(f"  cold start {cold:.2f} s, warm start {warm:.2f} s, ratio warm/cold {warm / cold:.3f}")
    print(f"  peak RSS of the task process: cold {cold_rss:.0f} MB, warm {warm_rss:.0f} MB")


if __name__ == "__main__":
    main()
