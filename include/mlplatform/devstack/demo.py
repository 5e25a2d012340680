"""The main job: replay the demo window for every configured model through the real Airflow scheduler
(mlplatform.devstack.replay: history ingest, the first training, then day by day ingest -> score -> monitor),
print the replay's summary and where the UIs are. The stack keeps running; `make down` stops it.

Window: DEMO_HISTORY_START (2013-01-01), DEMO_REPLAY_START (2013-02-01), DEMO_REPLAY_END (2013-02-07), inclusive.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mlplatform.config import model_configs, settings
from mlplatform.devstack.replay import Window, local_api, replay, summary


def demo_window() -> Window:
    return Window(os.environ.get("DEMO_HISTORY_START", "2013-01-01"),
                  os.environ.get("DEMO_REPLAY_START", "2013-02-01"),
                  os.environ.get("DEMO_REPLAY_END", "2013-02-07"))


def main() -> None:
    started = time.monotonic()
    try:
        window = demo_window()
    except ValueError as exc:
        sys.exit(f"demo: DEMO_HISTORY_START, DEMO_REPLAY_START, DEMO_REPLAY_END: {exc}")
    cfg = settings()
    api = local_api()
    run = replay(api, [m.name for m in model_configs()], window, tag="demo")
    print(summary(api, run))
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
