"""MLflow's artifact progress bars are off in every profile: tqdm draws them on stderr, which Airflow logs at error
level, so every model download showed up as error lines in the task logs. (docker-compose: tests/test_compose.py.)"""

from __future__ import annotations

import os

from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as PROGRESS_BAR


def test_every_local_profile_and_the_tests_turn_the_bars_off(tmp_path, monkeypatch):
    from mlplatform.devstack.distributed import Profile, profile_env
    from mlplatform.devstack.stack import stack_env

    assert os.environ[PROGRESS_BAR.name] == "false"  # tests/conftest.py, for the tests' own MLflow clients
    monkeypatch.delenv(PROGRESS_BAR.name)
    for env in (stack_env(tmp_path / "embedded"), profile_env(Profile(data_dir=tmp_path / "distributed"))):
        monkeypatch.setenv(PROGRESS_BAR.name, env[PROGRESS_BAR.name])
        assert PROGRESS_BAR.get() is False  # as MLflow reads it
