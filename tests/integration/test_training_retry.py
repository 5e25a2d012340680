"""Training is exactly-once under retries, against the warehouse emulator, the lake and a real MLflow
server: a try killed (kill -9) right after registering its version is retried in the same Airflow run;
the retry reuses that version, completes the remaining steps, and the dead try's run ends FAILED."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
MODEL = "retry_model"  # flight_delay's definition under another name: its own lake areas and MLflow entries
FEATURE_DAYS = [f"2013-01-{d:02d}" for d in range(10, 22)]
CUTOFF = "2013-01-22"
RUN = f"{MODEL}__train/manual__2013-01-22T00:00:00+00:00"


@pytest.fixture(scope="module")
def retry_model(local_servers, tmp_path_factory):
    """A model directory holding only MODEL, and its lake filled with the days a training needs."""
    import os

    import yaml

    from mlplatform import ingest

    raw = yaml.safe_load((REPO / "include" / "models" / "flight_delay.yaml").read_text())
    raw["name"] = MODEL
    directory = tmp_path_factory.mktemp("retry_models")
    (directory / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    previous = os.environ.get("MLOPS_MODELS_DIR")
    os.environ["MLOPS_MODELS_DIR"] = str(directory)
    try:
        for ds in FEATURE_DAYS:
            ingest.ingest_features(MODEL, ds)
        for ds in [*FEATURE_DAYS, CUTOFF]:
            ingest.ingest_labels(MODEL, ds)
        yield MODEL
    finally:
        if previous is None:
            os.environ.pop("MLOPS_MODELS_DIR")
        else:
            os.environ["MLOPS_MODELS_DIR"] = previous


def mlflow_client():
    from mlplatform import registry
    from mlplatform.config import settings

    return registry.client(settings().mlflow_tracking_uri)


def test_a_training_killed_after_registering_is_completed_by_its_retry(retry_model):
    from mlplatform import registry, training
    from mlplatform.lake import default_lake
    from tests.integration.pausing import kill_hard, start_paused

    first_try = start_paused(
        "from mlplatform import training\n"
        f"training.train_challenger({MODEL!r}, {CUTOFF!r}, 'initial', search_budget=0, airflow_run={RUN!r})\n",
        "training.registered")
    kill_hard(first_try)
    mlc = mlflow_client()
    (registered,) = mlc.search_model_versions(f"name = '{MODEL}'")
    killed_run = registered.run_id
    assert mlc.get_run(killed_run).info.status == "RUNNING", "killed inside its MLflow run"
    assert registry.version_by_alias(mlc, MODEL, registry.CHALLENGER) is None, "killed before the remaining steps"

    outcome = training.train_challenger(MODEL, CUTOFF, "initial", search_budget=0, airflow_run=RUN)

    assert [v.version for v in mlc.search_model_versions(f"name = '{MODEL}'")] == [registered.version]
    assert (outcome["version"], outcome["run_id"]) == (registered.version, killed_run)
    assert mlc.get_run(killed_run).info.status == "FAILED"
    version = mlc.get_model_version(MODEL, registered.version)
    key = training.idempotency_key(MODEL, CUTOFF, outcome["dataset_version"], RUN)
    assert version.tags["idempotency_key"] == key == mlc.get_run(killed_run).data.tags["idempotency_key"]
    assert version.tags["airflow_run"] == RUN and version.tags["gate_promote"] == "true"
    assert float(version.tags["holdout_auc"]) == pytest.approx(outcome["holdout_auc"], abs=1e-6)
    lake = default_lake()
    assert len(lake.read_frame(version.tags["reference_path"])) > 0
    assert len(lake.read_frame(version.tags["validation_path"])) == outcome["gate"]["holdout_rows"]
    assert lake.exists(f"training_sets/{MODEL}/{outcome['dataset_version']}.json")
    assert registry.version_by_alias(mlc, MODEL, registry.CHALLENGER).version == registered.version
    assert outcome["family"] == "hist_gradient_boosting" and outcome["gate"]["promote"]

    again = training.train_challenger(MODEL, CUTOFF, "initial", search_budget=0, airflow_run=RUN)
    assert again == outcome, "a retry of a completed training changes nothing"
    assert len(mlc.search_model_versions(f"name = '{MODEL}'")) == 1


def test_the_failure_callback_ends_the_runs_of_its_airflow_run(retry_model):
    """A killed or timed-out try's runs end FAILED from the train task's failure callback; another
    Airflow run's runs are left alone."""
    from mlplatform import training

    mlc = mlflow_client()
    experiment = mlc.get_experiment_by_name(MODEL) or mlc.get_experiment(mlc.create_experiment(MODEL))
    dead = mlc.create_run(experiment.experiment_id, tags={"airflow_run": f"{MODEL}__train/dead"}).info.run_id
    alive = mlc.create_run(experiment.experiment_id, tags={"airflow_run": f"{MODEL}__train/alive"}).info.run_id

    assert training.end_failed_training(MODEL, f"{MODEL}__train/dead") == [dead]
    assert mlc.get_run(dead).info.status == "FAILED" and mlc.get_run(alive).info.status == "RUNNING"
    mlc.set_terminated(alive)
