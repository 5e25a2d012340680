"""The main job: replay history through the real Airflow scheduler and print what happened.

1. backfill ingest over the history window (default January 2013);
2. train the first champion with its cut-off at the last history day, the newest labelled day in the lake
   (a cut-off D needs the outcomes known by D, which D's ingest brings);
3. backfill ingest over the replay window, which triggers score and monitor through Assets;
4. print a summary: per DAG, how its runs ended (a run whose decisive task skipped counts as skipped),
   the model versions, the alerts and where the reports are. The stack keeps running; `make down` stops it.

Window: DEMO_HISTORY_START (2013-01-01), DEMO_REPLAY_START (2013-02-01), DEMO_REPLAY_END (2013-02-07), inclusive.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

from mlplatform.config import model_configs, settings
from mlplatform.devstack.airflow_api import AirflowApi
from mlplatform.dates import shift

STAGES = ("ingest", "score", "monitor", "train")
# The task each stage's runs exist for: when it skipped (score: no champion yet), the run did nothing,
# although Airflow marks the run a success.
DECISIVE_TASKS = {"ingest": "ingest_features", "score": "score_days", "monitor": "drift_reports",
                  "train": "train_challenger"}
OUTCOME_ORDER = ("success", "skipped", "failed", "running", "queued")


def _window() -> tuple[str, str, str]:
    history = os.environ.get("DEMO_HISTORY_START", "2013-01-01")
    replay_start = os.environ.get("DEMO_REPLAY_START", "2013-02-01")
    replay_end = os.environ.get("DEMO_REPLAY_END", "2013-02-07")
    return history, replay_start, replay_end


def run(api: AirflowApi, model: str) -> None:
    history, replay_start, replay_end = _window()
    history_end = shift(replay_start, -1)
    dags = [f"{model}__{stage}" for stage in STAGES]
    api.wait_for_dags(dags)
    print(f"[demo] {model}: backfilling ingest {history} .. {history_end}", flush=True)
    api.backfill(f"{model}__ingest", history, history_end)
    api.wait_until_idle(dags)
    print(f"[demo] {model}: training the first champion with cut-off {history_end}, the newest labelled day",
          flush=True)
    api.trigger(f"{model}__train", f"initial__{history_end}", None, {"cutoff_ds": history_end, "reason": "initial"})
    api.wait_until_idle(dags)
    print(f"[demo] {model}: replaying {replay_start} .. {replay_end} (ingest -> score -> monitor)", flush=True)
    api.backfill(f"{model}__ingest", replay_start, replay_end)
    api.wait_until_idle(dags)


def run_outcome(run: dict, task_states: dict[str, str | None], decisive_task: str) -> str:
    """How one DAG run ended: its own state, except that a successful run whose decisive task skipped
    is "skipped". ``task_states``: the run's task instances, task id -> state."""
    if run["state"] == "success" and task_states.get(decisive_task) == "skipped":
        return "skipped"
    return run["state"]


def run_outcomes(runs: list[dict], task_instances: list[dict], decisive_task: str) -> Counter:
    """Outcomes of DAG runs, counted from the runs and their task instances as the REST API returns them
    (``dag_run_id`` and ``state`` in both; ``task_id`` in a task instance)."""
    states: dict[str, dict[str, str | None]] = {}
    for ti in task_instances:
        states.setdefault(ti["dag_run_id"], {})[ti["task_id"]] = ti["state"]
    return Counter(run_outcome(r, states.get(r["dag_run_id"], {}), decisive_task) for r in runs)


def runs_line(stage: str, outcomes: Counter) -> str:
    """``score    runs: 7 success, 30 skipped``: known outcomes in a fixed order, then any other."""
    order = [o for o in OUTCOME_ORDER if outcomes[o]] + sorted(o for o in outcomes if o not in OUTCOME_ORDER)
    return f"  {stage:8} runs: " + (", ".join(f"{outcomes[o]} {o}" for o in order) or "none")


def report_lines(lake, model: str) -> list[str]:
    """Where the newest drift report is: its lake path and its URL on the Airflow UI's Model reports page."""
    from mlplatform.alerts import drift_report_url
    from mlplatform.lake import REPORTS_AREA

    def report(ds: str) -> str:
        return f"{REPORTS_AREA}/{model}/ds={ds}/drift_report.html"

    days = [ds for ds in lake.days(REPORTS_AREA, model) if lake.exists(report(ds))]
    if not days:
        return ["  drift reports: none yet"]
    return [f"  drift reports: {len(days)} days; the latest ({days[-1]}):",
            f"    in the lake: {lake.uri(report(days[-1]))}",
            f"    served at:   {drift_report_url(model, days[-1])}"]


def summary(api: AirflowApi, model: str) -> str:
    from mlflow import MlflowClient

    from mlplatform.lake import default_lake
    from mlplatform.registry import CHAMPION, version_by_alias

    lines = [f"== {model} =="]
    for stage in STAGES:
        dag_id = f"{model}__{stage}"
        outcomes = run_outcomes(api.runs(dag_id), api.task_instances(dag_id), DECISIVE_TASKS[stage])
        lines.append(runs_line(stage, outcomes))
    client = MlflowClient(settings().mlflow_tracking_uri)
    numbers = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
    for v in (client.get_model_version(model, str(n)) for n in numbers):
        lines.append(f"  model version {v.version}: aliases={v.aliases} trained_to={v.tags.get('cutoff_ds', '?')} "
                     f"reason={v.tags.get('trigger_reason', '?')}: {v.tags.get('promotion_decision', '')}")
    champion = version_by_alias(client, model, CHAMPION)
    lines.append(f"  champion: version {champion.version if champion else 'none'}")
    outbox = settings().outbox_path
    alerts = [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []
    drift = [a for a in alerts if a["kind"] == "drift" and model in a["text"]]
    lines.append(f"  drift alerts: {len(drift)}" + "".join(f"\n    - {a['text'][:160]}" for a in drift[-3:]))
    lines += report_lines(default_lake(), model)
    return "\n".join(lines)


def main() -> None:
    started = time.monotonic()
    cfg = settings()
    api = AirflowApi.local_admin(cfg.airflow_url, Path(os.environ["AIRFLOW_HOME"]))
    for model in model_configs():
        run(api, model.name)
    print("\n".join(summary(api, m.name) for m in model_configs()))
    password_file = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    print(f"""
UIs (left running; `make down` stops them):
  Airflow        {cfg.airflow_url}   user admin, password in {password_file}
  Model reports  {cfg.airflow_url}/model-reports/   (in the Airflow UI: Browse > Model reports)
  MLflow         {cfg.mlflow_tracking_uri}
  Slack outbox (no webhook configured): {cfg.outbox_path}
demo finished in {time.monotonic() - started:.0f}s""")


if __name__ == "__main__":
    main()
