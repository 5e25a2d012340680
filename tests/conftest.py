"""Every test session gets its own data directory and Airflow home, set before Airflow is imported."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlplatform-tests-"))

os.environ.update({
    "MLOPS_DATA_DIR": str(_SESSION_DIR / "data"),
    "MLOPS_LAKE_URI": (_SESSION_DIR / "data" / "lake").as_uri(),
    "MLOPS_OUTBOX": str(_SESSION_DIR / "data" / "outbox" / "slack.jsonl"),
    "AIRFLOW_HOME": str(_SESSION_DIR / "airflow"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION_DIR}/airflow/airflow.db",
    "AIRFLOW_CONN_SLACK_ALERTS": '{"conn_type": "slackwebhook"}',
    # As in every profile: MLflow never unpickles an artifact, in tests either.
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    # As in every profile: no artifact progress bars on stderr (Airflow logs stderr at error level).
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
})
# Tests run beside other processes on 2 cores: one OpenMP thread avoids spinning at barriers (see stack_env).
os.environ.setdefault("OMP_NUM_THREADS", "1")
for _leaky in ("MLOPS_MODELS_DIR", "MLFLOW_TRACKING_URI", "AIRFLOW_CONN_WAREHOUSE"):
    os.environ.pop(_leaky, None)
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)
