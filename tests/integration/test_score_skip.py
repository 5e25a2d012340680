"""A score run for a model without a champion skips before importing anything heavy: the decision reads the
promotion log in the lake and asks MLflow's REST API, without mlflow itself. Whenever the log or the alias
names a champion, the light check does not skip, and the full path (which reconciles the log) decides."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
MODEL = "unscored_probe"
HEAVY = ("mlflow", "sklearn", "evidently", "snowflake.connector")

# The real score DAG, run with dag.test in a fresh interpreter; then what that interpreter has imported.
SCORE_RUN = f"""
import json, sys
from datetime import datetime, timezone
from airflow.dag_processing.dagbag import DagBag

dag = DagBag({str(REPO / "dags")!r}).dags["{MODEL}__score"]
run = dag.test(logical_date=datetime(2013, 3, 1, tzinfo=timezone.utc))
print(json.dumps({{"states": {{ti.task_id: ti.state for ti in run.get_task_instances()}},
                  "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """One model, never trained: no registered model, no promotion log."""
    import yaml

    raw = yaml.safe_load((REPO / "include" / "models" / "flight_delay.yaml").read_text())
    raw["name"] = MODEL
    directory = tmp_path_factory.mktemp("models")
    (directory / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    return directory


def test_a_score_run_without_a_champion_skips_before_any_heavy_import(local_servers, models_dir):
    env = {**os.environ, "MLOPS_MODELS_DIR": str(models_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "include"), str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", SCORE_RUN], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["states"] == {"score_days": "skipped"}
    assert seen["heavy"] == [], f"imported on the skip path: {seen['heavy']}"


def test_the_light_check_skips_only_while_neither_log_nor_alias_names_a_champion(local_servers):
    from mlplatform import promotion, registry
    from mlplatform.config import settings
    from mlplatform.lake import default_lake

    uri, lake = settings().mlflow_tracking_uri, default_lake()
    assert promotion.champion_absent(lake, uri, MODEL), "no such model in MLflow"
    mlc = registry.client(uri)
    run = mlc.create_run(mlc.create_experiment(MODEL))
    mlc.create_registered_model(MODEL)
    mlc.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)  # never loaded
    assert promotion.champion_absent(lake, uri, MODEL), "a version, but no alias"

    registry.set_alias(mlc, MODEL, registry.CHAMPION, "1")  # by hand, in the MLflow UI
    assert not promotion.champion_absent(lake, uri, MODEL), "the alias names a champion"
    assert promotion.reconcile(lake, mlc, MODEL, "test").champion == "1"

    mlc.delete_registered_model_alias(MODEL, registry.CHAMPION)  # removed by hand: the log still says v1
    assert not promotion.champion_absent(lake, uri, MODEL), "the log names a champion: reconcile must log the move"
    assert promotion.reconcile(lake, mlc, MODEL, "test").champion is None
    assert promotion.champion_absent(lake, uri, MODEL), "log and alias agree: no champion"

    assert not promotion.champion_absent(lake, "http://127.0.0.1:9", MODEL), "a server out of reach is no answer"
