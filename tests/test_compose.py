"""docker-compose.yml is valid for Debian's docker-compose, has the production topology, takes every setting
from .env and commits no secret. There is no Docker engine here: the file is validated, never run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker")
REQUIRED_SERVICES = {"postgres", "redis", "s3", "mlflow", *AIRFLOW_SERVICES}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|_KEY(_ID)?$|TOKEN")
# Variables in .env.example that have no value: the secrets, which have no default anywhere.
EMPTY_VAR = re.compile(r"^([A-Z][A-Z0-9_]*)=$", re.M)
# The password of a URL's user-info (scheme://user:PASSWORD@host), which must be a bare ${VAR} reference.
URL_PASSWORD = re.compile(r":(\$\{[^}]*\}|[^:@/\s]*)@")
FROM_ENV = re.compile(r"\$\{[A-Z_0-9]+(:\?[^}]*)?\}")


def docker_compose() -> str:
    found = shutil.which("docker-compose") or ("/usr/bin/docker-compose" if Path("/usr/bin/docker-compose").exists() else None)
    if not found:
        pytest.fail("docker-compose is not installed: `apt-get install -y docker-compose` (Debian's package); "
                    "`make test` installs it when it is missing")
    return found


def compose_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([docker_compose(), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE),
                           "--env-file", str(env_file), *extra, "config"],
                          capture_output=True, text=True, timeout=120, cwd=env_file.parent)


@pytest.fixture(scope="module")
def filled_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """.env.example with a distinct placeholder for every secret, as a user's .env would be."""
    text = ENV_EXAMPLE.read_text()
    secrets = {name: f"placeholder-{name.lower().replace('_', '-')}" for name in EMPTY_VAR.findall(text)}
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(EMPTY_VAR.sub(lambda m: f"{m.group(1)}={secrets[m.group(1)]}", text))
    return env_file, secrets


@pytest.fixture(scope="module")
def rendered(filled_env) -> dict:
    result = compose_config(filled_env[0])
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_has_the_production_topology(rendered):
    services = rendered["services"]
    assert REQUIRED_SERVICES <= set(services), sorted(REQUIRED_SERVICES - set(services))
    assert services["airflow-worker"]["scale"] == 2 and "celery worker" in str(services["airflow-worker"]["command"])
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://") and "@postgres:" in \
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://") and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        assert env["MLOPS_LAKE_URI"].startswith("s3://") and env["AWS_ENDPOINT_URL_S3"] == "http://s3:9000"
        assert services[name]["build"]["context"] == str(REPO), "the Airflow image is built from ./Dockerfile"
    assert "airflow-init" in services["airflow-scheduler"]["depends_on"]


def test_mlflow_server_has_postgres_s3_and_auth(rendered, filled_env):
    mlflow = rendered["services"]["mlflow"]
    assert mlflow["build"]["context"] == str(REPO / "mlflow")
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--backend-store-uri") + 1].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in command[command.index("--backend-store-uri") + 1]
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == filled_env[1]["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    # Only MLflow and the one-shot user setup see the admin password; Airflow components and tasks do not.
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-init"):
        assert filled_env[1]["MLFLOW_AUTH_ADMIN_PASSWORD"] not in str(rendered["services"][name]), name


def test_every_secret_comes_from_env(rendered, filled_env):
    _, secrets = filled_env
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "S3_SECRET_ACCESS_KEY", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
            "MLFLOW_AUTH_ADMIN_PASSWORD", "MLOPS_MLFLOW_PIPELINE_PASSWORD", "MLFLOW_FLASK_SECRET_KEY"} <= set(secrets)
    text = yaml.safe_dump(rendered)
    for name, placeholder in secrets.items():
        assert placeholder in text, f"{name} from .env is not used by docker-compose.yml"


def test_a_missing_secret_stops_compose(tmp_path):
    """.env.example as committed leaves the secrets empty, and nothing in the compose file fills them in."""
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    result = compose_config(env_file)
    assert result.returncode != 0
    assert re.search(r"set [A-Z_]+ in \.env", result.stderr), result.stderr


def test_no_secret_is_committed():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())

    def check(env: dict, where: str) -> None:
        for key, value in (env or {}).items():
            value = str(value)
            if SECRET_NAME.search(key):
                assert FROM_ENV.fullmatch(value), f"{where}: {key} must come from .env, no default"
            for password in URL_PASSWORD.findall(value):
                assert FROM_ENV.fullmatch(password), f"{where}: {key} has a literal password"

    for name, service in raw["services"].items():
        check(service.get("environment"), name)
        for arg in service.get("command") or []:
            for password in URL_PASSWORD.findall(str(arg)):
                assert FROM_ENV.fullmatch(password), f"{name}: literal password in its command"
    check(raw["x-airflow-common"]["environment"], "x-airflow-common")
    example = ENV_EXAMPLE.read_text()
    for line in example.splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and SECRET_NAME.search(match.group(1)):
            assert match.group(2) == "", f".env.example must leave {match.group(1)} empty"


def test_images_install_the_pinned_versions():
    lock = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+)", (REPO / "requirements.txt").read_text(), re.M))
    airflow_image = (REPO / "Dockerfile").read_text()
    assert f"apache/airflow:{lock['apache-airflow']}-python3.11" in airflow_image
    assert "-r /requirements.txt" in airflow_image
    mlflow_image = (REPO / "mlflow" / "Dockerfile").read_text()
    for package, arg in (("mlflow", "MLFLOW_VERSION"), ("psycopg", "PSYCOPG_VERSION"), ("boto3", "BOTO3_VERSION")):
        assert f"ARG {arg}={lock[package]}" in mlflow_image, package
    assert "mlflow[auth]==" in mlflow_image and "psycopg[binary]==" in mlflow_image
