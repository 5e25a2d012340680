"""docker-compose.yml is valid for Debian's docker-compose, has the production topology, takes every setting
from .env, commits no secret and gives each service only its own credentials. There is no Docker engine here:
the file is validated, never run; its init steps run against local stand-ins (the machine's PostgreSQL for the
database roles, a recording `mc` for the MinIO users)."""

from __future__ import annotations

import json
import os
import re
import secrets
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
REQUIRED_SERVICES = {"postgres", "redis", "s3", "s3-init", "mlflow", "mlflow-init", *AIRFLOW_SERVICES}
POSTGRES_INIT = REPO / "postgres" / "init-roles.sql"
S3_INIT = REPO / "minio" / "init.sh"
# user:password@postgres:5432/database in a service's URLs
POSTGRES_URL = re.compile(r"://([^:@/\s]+):([^@/\s]+)@postgres:5432/(\w+)")
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
    # Only the env file may set compose variables: the shell's environment overrides it, and the test process
    # carries settings of its own (e.g. MLFLOW_PORT from the embedded stack the integration tests start).
    clean_env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run([docker_compose(), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE),
                           "--env-file", str(env_file), *extra, "config"],
                          capture_output=True, text=True, timeout=120, cwd=env_file.parent, env=clean_env)


def fill_env_example(env_file: Path, **settings: str) -> dict[str, str]:
    """Write .env.example with a distinct placeholder for every secret, as a user's .env would be, plus
    ``settings``; returns the placeholders."""
    text = ENV_EXAMPLE.read_text()
    placeholders = {name: f"placeholder-{name.lower().replace('_', '-')}" for name in EMPTY_VAR.findall(text)}
    filled = EMPTY_VAR.sub(lambda m: f"{m.group(1)}={placeholders[m.group(1)]}", text)
    env_file.write_text(filled + "".join(f"{name}={value}\n" for name, value in settings.items()))
    return placeholders


def render(env_file: Path) -> dict:
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def filled_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    return env_file, fill_env_example(env_file)


@pytest.fixture(scope="module")
def rendered(filled_env) -> dict:
    return render(filled_env[0])


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
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    env = mlflow["environment"]
    # The backend store's URL holds a password: in the environment (read by `mlflow server`), not the command line.
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://") and "@postgres:5432/" in \
        env["MLFLOW_BACKEND_STORE_URI"]
    assert "--backend-store-uri" not in command
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == filled_env[1]["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql+psycopg://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    # Only MLflow and the one-shot user setup see the admin password; Airflow components and tasks do not.
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker", "airflow-init"):
        assert filled_env[1]["MLFLOW_AUTH_ADMIN_PASSWORD"] not in str(rendered["services"][name]), name
    # The user setup sees no database, S3 or Airflow secret.
    init_env = str(rendered["services"]["mlflow-init"]["environment"])
    for name in ("AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "AIRFLOW_S3_SECRET_ACCESS_KEY", "AIRFLOW_FERNET_KEY"):
        assert filled_env[1][name] not in init_env, name


def test_every_secret_comes_from_env(rendered, filled_env):
    _, secrets = filled_env
    assert {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD",
            "AIRFLOW_S3_SECRET_ACCESS_KEY", "MLFLOW_S3_SECRET_ACCESS_KEY", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET",
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


# -- least privilege -------------------------------------------------------------------------------------------
def test_no_service_but_postgres_uses_the_superuser(rendered, filled_env):
    _, placeholders = filled_env
    services = rendered["services"]
    superuser = services["postgres"]["environment"]["POSTGRES_USER"]
    roles = {"airflow": (services["postgres"]["environment"]["AIRFLOW_DB_USER"], placeholders["AIRFLOW_DB_PASSWORD"]),
             "mlflow": (services["postgres"]["environment"]["MLFLOW_DB_USER"], placeholders["MLFLOW_DB_PASSWORD"])}
    assert superuser not in {user for user, _ in roles.values()}
    for name, service in services.items():
        if name == "postgres":
            continue
        text = yaml.safe_dump(service)
        assert placeholders["POSTGRES_PASSWORD"] not in text, f"{name} sees the superuser's password"
        for user, password, database in POSTGRES_URL.findall(text):
            owner = "mlflow" if name == "mlflow" else "airflow"
            assert (user, password) == roles[owner], f"{name} connects to {database} as {user}, not as {owner}'s role"
    urls = {name: POSTGRES_URL.findall(yaml.safe_dump(services[name])) for name in (*AIRFLOW_SERVICES, "mlflow")}
    assert all(urls.values()), {name: found for name, found in urls.items() if not found}
    assert {db for _, _, db in urls["airflow-scheduler"]} == {"airflow"}
    assert {db for _, _, db in urls["mlflow"]} == {"mlflow", "mlflow_auth"}


def test_postgres_runs_the_role_init_on_first_start(rendered):
    postgres = rendered["services"]["postgres"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in postgres["volumes"]}
    assert mounts["/docker-entrypoint-initdb.d/10-init-roles.sql"] == str(POSTGRES_INIT)
    # Its healthcheck goes over TCP, which the server opens only after its init scripts ran.
    assert "127.0.0.1" in postgres["healthcheck"]["test"]
    for name in ("airflow-init", "mlflow"):
        assert rendered["services"][name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def _psql(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    psql = shutil.which("psql")
    if not psql:
        pytest.fail("psql is not installed (Debian's postgresql-client; `make test` installs it when missing)")
    return subprocess.run([psql, "-h", "127.0.0.1", "-U", "postgres", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.integration
def test_postgres_init_creates_one_role_per_service(tmp_path):
    """Run postgres/init-roles.sql as the postgres image would (psql as the superuser, with the rendered
    service's environment) on the machine's PostgreSQL, under names unique to this test, then drop them."""
    token = secrets.token_hex(4)
    names = {"AIRFLOW_DB_USER": f"t{token}_airflow", "AIRFLOW_DB": f"t{token}_airflow_db",
             "MLFLOW_DB_USER": f"t{token}_mlflow", "MLFLOW_DB": f"t{token}_mlflow_db",
             "MLFLOW_AUTH_DB": f"t{token}_mlflow_auth"}
    fill_env_example(tmp_path / ".env", **names)
    postgres = render(tmp_path / ".env")["services"]["postgres"]
    init_file = next(v.split(":")[0] for v in postgres["volumes"] if "/docker-entrypoint-initdb.d/" in v)
    databases = [names["AIRFLOW_DB"], names["MLFLOW_DB"], names["MLFLOW_AUTH_DB"]]
    try:
        result = _psql("-d", "postgres", "-f", init_file, env=postgres["environment"])
        assert result.returncode == 0, result.stderr
        query = (f"SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                 f"WHERE rolname LIKE 't{token}%' ORDER BY 1")
        roles = _psql("-d", "postgres", "-Atc", query).stdout.split()
        assert roles == [f"{names['AIRFLOW_DB_USER']}|t|f|f|f", f"{names['MLFLOW_DB_USER']}|t|f|f|f"]
        owners = _psql("-d", "postgres", "-Atc", f"SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
                                                  f"WHERE datname LIKE 't{token}%' ORDER BY 1").stdout.split()
        assert owners == sorted([f"{names['AIRFLOW_DB']}|{names['AIRFLOW_DB_USER']}",
                                 f"{names['MLFLOW_DB']}|{names['MLFLOW_DB_USER']}",
                                 f"{names['MLFLOW_AUTH_DB']}|{names['MLFLOW_DB_USER']}"])
        # Each role reaches its own databases and not the other's.
        for user, own, other in ((names["AIRFLOW_DB_USER"], names["AIRFLOW_DB"], names["MLFLOW_DB"]),
                                 (names["MLFLOW_DB_USER"], names["MLFLOW_AUTH_DB"], names["AIRFLOW_DB"])):
            check = f"SELECT has_database_privilege('{user}', '{own}', 'CONNECT'), " \
                    f"has_database_privilege('{user}', '{other}', 'CONNECT')"
            assert _psql("-d", "postgres", "-Atc", check).stdout.strip() == "t|f", user
    finally:
        for database in databases:
            _psql("-d", "postgres", "-c", f'DROP DATABASE IF EXISTS "{database}"')
        for role in (names["AIRFLOW_DB_USER"], names["MLFLOW_DB_USER"]):
            _psql("-d", "postgres", "-c", f'DROP ROLE IF EXISTS "{role}"')


def _published(service: dict) -> list[tuple[str, str]]:
    """(host address, host port) of each published port; no address means every interface."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", "0.0.0.0"), str(port.get("published"))))
        else:
            parts = str(port).split("/")[0].split(":")
            out.append((parts[0], parts[1]) if len(parts) == 3 else ("0.0.0.0", parts[0]))
    return out


def test_published_ports_bind_to_loopback_unless_env_says_otherwise(rendered, tmp_path):
    published = {name: _published(service) for name, service in rendered["services"].items() if service.get("ports")}
    assert {"airflow-apiserver", "mlflow", "s3"} <= set(published), published
    assert all(address == "127.0.0.1" for ports in published.values() for address, _ in ports), published
    fill_env_example(tmp_path / ".env", AIRFLOW_BIND="0.0.0.0", MLFLOW_BIND="10.1.2.3")
    services = render(tmp_path / ".env")["services"]
    assert _published(services["airflow-apiserver"]) == [("0.0.0.0", "8080")]
    assert _published(services["mlflow"]) == [("10.1.2.3", "5000")]
    assert {address for address, _ in _published(services["s3"])} == {"127.0.0.1"}


def test_airflow_and_mlflow_have_their_own_s3_keys(rendered, filled_env):
    _, placeholders = filled_env
    services = rendered["services"]
    root = (placeholders["MINIO_ROOT_USER"], placeholders["MINIO_ROOT_PASSWORD"])
    assert (services["s3"]["environment"]["MINIO_ROOT_USER"], services["s3"]["environment"]["MINIO_ROOT_PASSWORD"]) == root

    def keys(name: str) -> tuple[str, str]:
        env = services[name]["environment"]
        return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]

    airflow = {keys(name) for name in AIRFLOW_SERVICES}
    assert airflow == {(placeholders["AIRFLOW_S3_ACCESS_KEY_ID"], placeholders["AIRFLOW_S3_SECRET_ACCESS_KEY"])}
    assert keys("mlflow") == (placeholders["MLFLOW_S3_ACCESS_KEY_ID"], placeholders["MLFLOW_S3_SECRET_ACCESS_KEY"])
    assert len({root, keys("mlflow"), *airflow}) == 3
    # The root keys reach MinIO and the one-shot that creates the users, nothing else.
    holders = {name for name, service in services.items() if root[1] in yaml.safe_dump(service)}
    assert holders == {"s3", "s3-init"}, holders
    for name in (*AIRFLOW_SERVICES, "mlflow"):
        assert services[name]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully", \
            f"{name} may start before its S3 user exists"


def _run_s3_init(rendered: dict, tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    """minio/init.sh, run by sh with the s3-init service's environment and an `mc` that records each call (and
    each policy document) instead of talking to MinIO, which cannot run here."""
    service = rendered["services"]["s3-init"]
    script = next(v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == service["entrypoint"][-1])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mc").write_text(
        '#!/bin/sh\nprintf "%s\\n" "$*" >> "$MC_LOG"\n'
        'if [ "$1 $2 $3" = "admin policy create" ]; then cp "$6" "$MC_LOG.$5.json"; fi\n')
    (bin_dir / "mc").chmod(0o755)
    env = {**service["environment"], **overrides, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "MC_LOG": str(tmp_path / "mc.log"), "TMPDIR": str(tmp_path)}
    return subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)


def _policy_resources(path: Path) -> set[str]:
    policy = json.loads(path.read_text())
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    return {resource for statement in policy["Statement"] for resource in statement["Resource"]}


def test_s3_init_gives_each_service_a_user_limited_to_its_buckets(rendered, filled_env, tmp_path):
    _, placeholders = filled_env
    result = _run_s3_init(rendered, tmp_path)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "mc.log").read_text().splitlines()
    assert calls[0] == f"alias set local http://s3:9000 {placeholders['MINIO_ROOT_USER']} {placeholders['MINIO_ROOT_PASSWORD']}"
    for bucket in ("mlplatform-lake", "mlplatform-logs", "mlplatform-mlflow"):
        assert f"mb --ignore-existing local/{bucket}" in calls
    for service in ("airflow", "mlflow"):
        key, secret = placeholders[f"{service.upper()}_S3_ACCESS_KEY_ID"], placeholders[f"{service.upper()}_S3_SECRET_ACCESS_KEY"]
        assert f"admin user add local {key} {secret}" in calls
        assert f"admin policy attach local {service}-buckets --user {key}" in calls
    assert _policy_resources(tmp_path / "mc.log.airflow-buckets.json") == {
        "arn:aws:s3:::mlplatform-lake", "arn:aws:s3:::mlplatform-lake/*",
        "arn:aws:s3:::mlplatform-logs", "arn:aws:s3:::mlplatform-logs/*"}
    assert _policy_resources(tmp_path / "mc.log.mlflow-buckets.json") == {
        "arn:aws:s3:::mlplatform-mlflow", "arn:aws:s3:::mlplatform-mlflow/*"}


def test_s3_init_refuses_a_service_key_equal_to_the_root_user(rendered, filled_env, tmp_path):
    result = _run_s3_init(rendered, tmp_path, MLFLOW_S3_ACCESS_KEY_ID=filled_env[1]["MINIO_ROOT_USER"])
    assert result.returncode != 0 and "must not be MinIO's root user" in result.stderr
    assert "admin user add local " + filled_env[1]["MINIO_ROOT_USER"] not in (tmp_path / "mc.log").read_text()


def test_mlflow_never_unpickles_in_any_service(rendered):
    for name in (*AIRFLOW_SERVICES, "mlflow"):
        assert rendered["services"][name]["environment"]["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false", name


def test_no_mlflow_progress_bars_in_airflow_logs(rendered):
    """tqdm draws them on stderr, which Airflow logs at error level (see tests/unit/test_mlflow_progress_bars.py)."""
    for name in AIRFLOW_SERVICES:
        assert rendered["services"][name]["environment"]["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false", name
