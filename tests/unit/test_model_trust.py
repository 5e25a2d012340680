"""Model artifacts cannot run code: the allowlist in the repository covers every model family, registration
refuses what could not be loaded, and every local profile turns MLflow's unpickling off."""

import numpy as np
import pandas as pd
import pytest

from mlplatform import registry, training
from mlplatform.config import model_config
from tests.unit.helpers import schedule_rows

CFG = model_config("flight_delay")
SMALL = {"hist_gradient_boosting": {"max_iter": 10}}  # the types do not depend on the size
NO_INFERENCE = ["scikit-learn"]  # declared: inferring them loads the model in a subprocess (~30 s)


@pytest.fixture(scope="module")
def train():
    frame = pd.concat([schedule_rows(150, f"2013-01-0{d}", seed=d) for d in range(1, 6)], ignore_index=True)
    late = (frame["SCHED_DEP_TIME"] > 1500) ^ (np.random.default_rng(3).random(len(frame)) < 0.2)
    return frame.assign(**{CFG.target.name: late.astype(float)})


@pytest.mark.parametrize("family", sorted(training.FAMILIES))
def test_every_family_registers_and_loads_back_within_the_allowlist(family, train, tmp_path):
    import mlflow.sklearn

    from mlplatform.features import build_features

    model = training.fit(train, CFG, family, SMALL.get(family, {}))
    trusted = registry.trusted_types(model)
    assert trusted == training.trusted_model_types()
    mlflow.sklearn.save_model(model, tmp_path / "model", serialization_format="skops", skops_trusted_types=trusted,
                              pip_requirements=NO_INFERENCE)
    loaded = registry.load_model_dir(tmp_path / "model", f"{CFG.name} v1")
    features = build_features(train.head(30), CFG)
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))


def test_registration_refuses_a_model_holding_types_outside_the_allowlist(train):
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=2).fit(train[["DISTANCE"]], train[CFG.target.name])
    with pytest.raises(registry.UntrustedModel, match=r"allowlist.*sklearn\.tree\._tree\.Tree"):
        registry.trusted_types(tree)


def test_a_model_directory_without_a_skops_file_is_refused(train, tmp_path):
    import mlflow.sklearn

    model = training.fit(train, CFG, "logistic_regression", {})
    mlflow.sklearn.save_model(model, tmp_path / "model", serialization_format="skops",
                              skops_trusted_types=registry.trusted_types(model), pip_requirements=NO_INFERENCE)
    (tmp_path / "model" / registry.SKOPS_FILE).write_bytes(b"\x80\x04not a zip archive")
    with pytest.raises(registry.UntrustedModel, match="m v4's model.skops is not a skops file"):
        registry.load_model_dir(tmp_path / "model", "m v4")
    (tmp_path / "model" / registry.SKOPS_FILE).unlink()
    with pytest.raises(registry.UntrustedModel, match="m v4 has no model.skops"):
        registry.load_model_dir(tmp_path / "model", "m v4")


def test_every_local_profile_turns_mlflow_unpickling_off(tmp_path, monkeypatch):
    from mlplatform.devstack.distributed import Profile, profile_env
    from mlplatform.devstack.stack import stack_env

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")  # a leftover in the shell does not win
    assert stack_env(tmp_path / "embedded")["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert profile_env(Profile(data_dir=tmp_path / "distributed"))["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
