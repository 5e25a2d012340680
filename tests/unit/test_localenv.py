"""`.env` is read as a dotenv file by the platform's entry points, not by make: values with `$`, `#` and quotes
arrive unchanged, and only the variables the platform reads reach a recipe (never the docker-compose secrets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

DUMP_ENV = "import json, os, sys\njson.dump(dict(os.environ), open(sys.argv[1], 'w'))\n"
# The recipe that probes: the same two ways a recipe of the Makefile can run a command.
PROBE_MK = """
probe:
\t$(BIN)/python dump_env.py plain.json
\t$(WITH_ENV) $(BIN)/python dump_env.py through.json
"""
COMPOSE_ONLY = {"POSTGRES_PASSWORD": "compose-only-postgres", "MINIO_ROOT_PASSWORD": "compose-only-minio",
                "AIRFLOW_FERNET_KEY": "compose-only-fernet"}


def write_dotenv(directory) -> dict[str, str]:
    """A .env with awkward values; returns what each platform variable must arrive as."""
    expected = {
        "MLOPS_DATA_DIR": str(directory / "data"),
        "MLOPS_OUTBOX": f"{directory}/outbox $HOME #1 \"x\".jsonl",
        "DEMO_REPLAY_END": "2013-02-0$7 # not a comment 'q'",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ad$min:admin#1",
        "AIRFLOW_CONN_SLACK_ALERTS": '{"conn_type": "slackwebhook", "password": "T0$1/B#2"}',
    }
    (directory / ".env").write_text(
        f"MLOPS_DATA_DIR={expected['MLOPS_DATA_DIR']}\n"
        f"MLOPS_OUTBOX='{expected['MLOPS_OUTBOX']}'\n"
        f"DEMO_REPLAY_END=\"{expected['DEMO_REPLAY_END']}\"\n"
        f"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS={expected['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS']}\n"
        f"AIRFLOW_CONN_SLACK_ALERTS='{expected['AIRFLOW_CONN_SLACK_ALERTS']}'\n"
        "MLOPS_MLFLOW_PIPELINE_PASSWORD=distributed-only\n"
        + "".join(f"{name}={value}\n" for name, value in COMPOSE_ONLY.items()))
    (directory / "dump_env.py").write_text(DUMP_ENV)
    return expected


def clean_environment() -> dict[str, str]:
    """This process's environment without the platform's variables (the test session sets some), so the ones a
    child sees come from the .env under test."""
    names = ("MLOPS_", "MLFLOW_", "AIRFLOW", "DEMO_", *COMPOSE_ONLY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(names)}
    return {**env, "PYTHONPATH": str(REPO / "include")}


def assert_platform_settings_only(seen: dict, expected: dict) -> None:
    for name, value in expected.items():
        assert seen.get(name) == value, (name, seen.get(name))
    assert not set(COMPOSE_ONLY) & set(seen), "a compose secret reached the recipe"
    assert "MLOPS_MLFLOW_PIPELINE_PASSWORD" not in seen, "the distributed profile's secret reached an embedded recipe"


def test_the_entry_point_applies_dotenv_values_unchanged(tmp_path):
    expected = write_dotenv(tmp_path)
    result = subprocess.run([sys.executable, "-m", "mlplatform.devstack.localenv", sys.executable, "dump_env.py",
                             "seen.json"], cwd=tmp_path, env=clean_environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert_platform_settings_only(seen, expected)
    # The stack's own settings come along (what `eval $(stack env)` used to give).
    assert seen["AIRFLOW_HOME"] == str(tmp_path / "data" / "airflow")


def test_the_environment_wins_over_dotenv(tmp_path):
    write_dotenv(tmp_path)
    env = {**clean_environment(), "DEMO_REPLAY_END": "2013-03-01"}
    subprocess.run([sys.executable, "-m", "mlplatform.devstack.localenv", sys.executable, "dump_env.py", "seen.json"],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    assert json.loads((tmp_path / "seen.json").read_text())["DEMO_REPLAY_END"] == "2013-03-01"


def test_make_recipes_get_only_the_platform_settings_unchanged(tmp_path):
    """The Makefile itself, with .env in make's directory: make does not read it, and a recipe that goes through
    the entry point gets the platform's variables exactly as written."""
    expected = write_dotenv(tmp_path)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "probe.mk").write_text(PROBE_MK)
    result = subprocess.run(["make", "-s", "-C", str(tmp_path), "-f", str(REPO / "Makefile"), "-f", "probe.mk", "probe"],
                            env=clean_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert not ({*COMPOSE_ONLY, *expected} & set(plain)), "make exported .env into a recipe"
    assert_platform_settings_only(json.loads((tmp_path / "through.json").read_text()), expected)


def test_the_distributed_profile_reads_only_its_own_settings(tmp_path):
    from mlplatform.devstack.localenv import distributed_setting, dotenv_settings

    write_dotenv(tmp_path)
    (tmp_path / ".env").write_text((tmp_path / ".env").read_text() + "MLOPS_POSTGRES_URL='postgresql://u@h:1'\n")
    assert dotenv_settings(distributed_setting, tmp_path / ".env") == {
        "MLOPS_MLFLOW_PIPELINE_PASSWORD": "distributed-only", "MLOPS_POSTGRES_URL": "postgresql://u@h:1"}
