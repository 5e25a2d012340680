"""Model artifacts cannot run code, against the real MLflow server: a pickled artifact, a skops artifact whose
MLmodel widens its own trusted list, and a skops artifact of a type outside the repository's allowlist are
each refused without being loaded. Each carries a payload that creates a file when it runs; the file must
not exist after the refusal, and a control shows MLflow's own loader, allowed to unpickle, does run it.
A champion like that fails the score DAG at once, with one alert, and writes nothing."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
MODEL = "artifact_safety"
SCORED_MODEL = "untrusted_flight"  # a copy of flight_delay.yaml under its own name, so no other test sees it
GOOD_DAY, BAD_DAY = "2013-01-09", "2013-01-10"
DECLARED = ["scikit-learn"]  # declared requirements: inferring them would load (and so run) the artifact


class PicklePayload:
    """Unpickling this creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


class SkopsPayload:
    """Loading this with skops, once its type is trusted, creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __setstate__(self, state):
        Path(state["marker"]).touch()
        self.__dict__.update(state)


PAYLOAD_TYPE = f"{SkopsPayload.__module__}.SkopsPayload"


def log_version(model, model_name: str = MODEL, **kwargs) -> tuple[str, str]:
    """Register ``model`` as a new version; returns (version, logged model id)."""
    import mlflow
    import mlflow.sklearn

    mlflow.set_experiment(model_name)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=model_name,
                                        pip_requirements=DECLARED, **kwargs)
    return str(info.registered_model_version), info.model_id


def stored_artifact(model_id: str) -> Path:
    """The logged model's directory in the MLflow server's artifact store."""
    (mlmodel,) = (Path(os.environ["MLOPS_DATA_DIR"]) / "mlflow" / "artifacts").rglob(f"{model_id}/artifacts/MLmodel")
    return mlmodel.parent


def small_pipeline():
    from sklearn.linear_model import LogisticRegression
    import numpy as np

    x = np.arange(40, dtype=float).reshape(-1, 1)
    return LogisticRegression().fit(x, x[:, 0] > 19)


def mlflow_loads_it_when_allowed(model_name: str, version: str, monkeypatch) -> None:
    """The control: MLflow's loader, as registry.load_version used it, trusts what the artifact declares."""
    import mlflow.sklearn

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    mlflow.sklearn.load_model(f"models:/{model_name}/{version}")


def test_mlflow_itself_refuses_to_unpickle_in_this_profile(local_servers):
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == local_servers["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    version, _ = log_version(small_pipeline(), serialization_format="skops", skops_trusted_types=[])
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(f"models:/{MODEL}/{version}")


def test_a_pickled_artifact_is_refused_without_running_it(local_servers, tmp_path, monkeypatch):
    from mlplatform import registry

    marker = tmp_path / "pickle-ran"
    version, _ = log_version(PicklePayload(marker), serialization_format="cloudpickle")
    with pytest.raises(registry.UntrustedModel, match=rf"{MODEL} v{version} is serialized as 'cloudpickle'"):
        registry.load_version(MODEL, version)
    assert not marker.exists()

    mlflow_loads_it_when_allowed(MODEL, version, monkeypatch)
    assert marker.exists(), "the control: the payload is live"


def test_a_skops_artifact_whose_mlmodel_widens_the_trusted_list_is_refused(local_servers, tmp_path, monkeypatch):
    import skops.io
    import yaml

    from mlplatform import registry

    marker = tmp_path / "skops-ran"
    model = small_pipeline()
    version, model_id = log_version(model, serialization_format="skops", skops_trusted_types=registry.trusted_types(model))
    stored = stored_artifact(model_id)  # tampered in the store: a payload, and an MLmodel that trusts it
    skops.io.dump(SkopsPayload(marker), stored / registry.SKOPS_FILE)
    mlmodel = yaml.safe_load((stored / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["skops_trusted_types"] += [PAYLOAD_TYPE]
    (stored / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with pytest.raises(registry.UntrustedModel, match=rf"{MODEL} v{version} holds types outside .*{PAYLOAD_TYPE}"):
        registry.load_version(MODEL, version)
    assert not marker.exists()

    mlflow_loads_it_when_allowed(MODEL, version, monkeypatch)
    assert marker.exists(), "the control: the widened list would have let the payload run"


def test_a_skops_artifact_of_a_type_outside_the_allowlist_is_refused(local_servers, tmp_path, monkeypatch):
    from mlplatform import registry

    marker = tmp_path / "unknown-type-ran"
    with pytest.raises(registry.UntrustedModel, match=PAYLOAD_TYPE):  # the platform would not register it
        registry.trusted_types(SkopsPayload(marker))
    # Registered by hand, declaring its own type. MLflow loads the file once while saving it, to check it.
    version, _ = log_version(SkopsPayload(marker), serialization_format="skops", skops_trusted_types=[PAYLOAD_TYPE])
    marker.unlink(missing_ok=True)

    with pytest.raises(registry.UntrustedModel, match=rf"{MODEL} v{version} holds types outside .*{PAYLOAD_TYPE}"):
        registry.load_version(MODEL, version)
    assert not marker.exists()

    mlflow_loads_it_when_allowed(MODEL, version, monkeypatch)
    assert marker.exists(), "the control: the payload is live"


# -- a refused champion in the score DAG --------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored_model(local_servers, warehouse, tmp_path_factory):
    """SCORED_MODEL with a trusted v1 as champion that scored GOOD_DAY, and feature partitions for both days."""
    import pandas as pd
    import yaml

    from mlplatform import registry, scoring, training
    from mlplatform.config import model_config, settings
    from mlplatform.lake import FEATURES_AREA, default_lake
    from tests.unit.helpers import schedule_rows

    raw = yaml.safe_load((REPO / "include" / "models" / "flight_delay.yaml").read_text())
    models_dir = tmp_path_factory.mktemp("models")
    (models_dir / f"{SCORED_MODEL}.yaml").write_text(yaml.safe_dump({**raw, "name": SCORED_MODEL}))
    previous = os.environ.get("MLOPS_MODELS_DIR")
    os.environ["MLOPS_MODELS_DIR"] = str(models_dir)
    try:
        cfg = model_config(SCORED_MODEL)
        for seed, ds in enumerate((GOOD_DAY, BAD_DAY)):
            default_lake().commit_partition(FEATURES_AREA, SCORED_MODEL, ds, schedule_rows(60, ds, seed=seed), {})
        train = pd.concat([schedule_rows(150, f"2013-01-0{d}", seed=d) for d in range(1, 6)], ignore_index=True)
        train[cfg.target.name] = (train["SCHED_DEP_TIME"] > 1500).astype(float)
        model = training.fit(train, cfg, "logistic_regression", {})
        version, _ = log_version(model, SCORED_MODEL, serialization_format="skops",
                                 skops_trusted_types=registry.trusted_types(model))
        mlc = registry.client(settings().mlflow_tracking_uri)
        registry.set_alias(mlc, SCORED_MODEL, registry.CHAMPION, version)
        assert scoring.score(SCORED_MODEL, GOOD_DAY)["model_version"] == version
        yield mlc
    finally:
        if previous is None:
            os.environ.pop("MLOPS_MODELS_DIR")
        else:
            os.environ["MLOPS_MODELS_DIR"] = previous


def outbox() -> list[dict]:
    from mlplatform.config import settings

    path = settings().outbox_path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def predictions_in_warehouse(warehouse, ds: str) -> int:
    sql = "SELECT COUNT(*) AS N FROM FLIGHTS.ML.PREDICTIONS WHERE MODEL_NAME = %(m)s AND DS = %(ds)s"
    return int(warehouse.query(sql, {"m": SCORED_MODEL, "ds": ds}).frame["N"].iloc[0])


def test_an_untrusted_champion_fails_scoring_once_with_one_alert_and_writes_nothing(scored_model, warehouse, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    from mlplatform import registry
    from mlplatform.lake import PREDICTIONS_AREA, default_lake

    lake, good_dir = default_lake(), f"{PREDICTIONS_AREA}/{SCORED_MODEL}/ds={GOOD_DAY}"
    good_manifest, good_rows = lake.read_bytes(f"{good_dir}/_manifest.json"), predictions_in_warehouse(warehouse, GOOD_DAY)
    marker = tmp_path / "champion-ran"
    bad, _ = log_version(PicklePayload(marker), SCORED_MODEL, serialization_format="cloudpickle")
    registry.set_alias(scored_model, SCORED_MODEL, registry.CHAMPION, bad)  # by hand, in the MLflow UI
    alerts_before = len(outbox())
    temp_before = lake.list_dir("_tmp")  # the session's lake is shared: other tests' killed writers leave theirs

    dag = DagBag(str(REPO / "dags")).dags[f"{SCORED_MODEL}__score"]
    run = dag.test(logical_date=datetime.fromisoformat(BAD_DAY).replace(tzinfo=timezone.utc))
    (ti,) = run.get_task_instances()
    assert run.state == "failed" and ti.state == "failed"
    assert ti.try_number == 1, "an untrusted artifact must not be retried"
    assert not marker.exists()

    (alert,) = outbox()[alerts_before:]
    assert alert["kind"] == "untrusted_model"
    assert f"{SCORED_MODEL} v{bad} is serialized as 'cloudpickle'" in alert["text"]
    assert alert["blocks"][0]["text"]["text"].startswith(":no_entry: Untrusted model artifact refused")

    assert lake.list_dir(f"{PREDICTIONS_AREA}/{SCORED_MODEL}") == [f"ds={GOOD_DAY}"], "nothing written for the day"
    assert lake.list_dir("_tmp") == temp_before, "no temporary file left by the refused run"
    assert predictions_in_warehouse(warehouse, BAD_DAY) == 0
    assert lake.read_bytes(f"{good_dir}/_manifest.json") == good_manifest
    assert predictions_in_warehouse(warehouse, GOOD_DAY) == good_rows > 0


def test_monitoring_refuses_a_reference_path_outside_the_model_s_area(scored_model):
    """The reference a monitor reads is named by an MLflow tag, which anyone who can edit the registry can set."""
    from mlplatform import monitoring
    from mlplatform.lake import UnsafePath, default_lake
    from tests.unit.helpers import schedule_rows

    scored_by = default_lake().partition("predictions", SCORED_MODEL, GOOD_DAY).manifest["model_version"]
    elsewhere = "reference/flight_delay/run=someone-else/reference.parquet"
    default_lake().write_frame(elsewhere, schedule_rows(20))
    scored_model.set_model_version_tag(SCORED_MODEL, scored_by, "reference_path", elsewhere)
    with pytest.raises(UnsafePath, match="reference/untrusted_flight"):
        monitoring.monitor(SCORED_MODEL, GOOD_DAY)
