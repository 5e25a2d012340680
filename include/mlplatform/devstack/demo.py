"""The main job: replay history through the real Airflow scheduler and print what happened.

1. backfill ingest over the history window (default January 2013);
2. train the first champion with its cut-off at the first replayed day;
3. backfill ingest over the replay window, which triggers score and monitor through Assets;
4. print a summary. The stack keeps running; `make down` stops it.

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


def _window() -> tuple[str, str, str]:
    history = os.environ.get("DEMO_HISTORY_START", "2013-01-01")
    replay_start = os.environ.get("DEMO_REPLAY_START", "2013-02-01")
    replay_end = os.environ.get("DEMO_REPLAY_END", "2013-02-07")
    return history, replay_start, replay_end


def run(api: AirflowApi, model: str) -> None:
    history, replay_start, replay_end = _window()
    dags = [f"{model}__{stage}" for stage in ("ingest", "score", "monitor", "train")]
    api.wait_for_dags(dags)
    print(f"[demo] {model}: backfilling ingest {history} .. {shift(replay_start, -1)}", flush=True)
    api.backfill(f"{model}__ingest", history, shift(replay_start, -1))
    api.wait_until_idle(dags)
    print(f"[demo] {model}: training the first champion with cut-off {replay_start}", flush=True)
    api.trigger(f"{model}__train", f"initial__{replay_start}", None, {"cutoff_ds": replay_start, "reason": "initial"})
    api.wait_until_idle(dags)
    print(f"[demo] {model}: replaying {replay_start} .. {replay_end} (ingest -> score -> monitor)", flush=True)
    api.backfill(f"{model}__ingest", replay_start, replay_end)
    api.wait_until_idle(dags)


def summary(api: AirflowApi, model: str) -> str:
    from mlflow import MlflowClient

    from mlplatform.lake import REPORTS_AREA
    from mlplatform.lake import default_lake as lake
    from mlplatform.registry import CHAMPION, version_by_alias

    lines = [f"== {model} =="]
    for stage in ("ingest", "score", "monitor", "train"):
        states = Counter(r["state"] for r in api.runs(f"{model}__{stage}"))
        lines.append(f"  {stage:8} runs: {dict(states)}")
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
    days = lake().days(REPORTS_AREA, model)
    latest = lake().uri(f"{REPORTS_AREA}/{model}/ds={days[-1]}/drift_report.html") if days else "none yet"
    lines.append(f"  reports: {len(days)} days; latest: {latest}")
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
  Airflow  {cfg.airflow_url}   user admin, password in {password_file}
  MLflow   {cfg.mlflow_tracking_uri}
  Slack outbox (no webhook configured): {cfg.outbox_path}
demo finished in {time.monotonic() - started:.0f}s""")


if __name__ == "__main__":
    main()
