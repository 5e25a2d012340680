"""The distributed profile: docker-compose.yml's topology as local processes.

    python -m mlplatform.devstack.distributed up|down|status|env
    python -m mlplatform.devstack.distributed measure --profile distributed|embedded [--replay 2013-02-01 2013-02-07]

What runs (compose service in brackets):
- Airflow with the CeleryExecutor [airflow-*]: api-server, scheduler, dag-processor and triggerer, metadata in
  the machine's PostgreSQL (127.0.0.1:5432), Redis (127.0.0.1:6379) as the Celery broker;
- in PostgreSQL [postgres], one login role for Airflow and one for MLflow, each owning its own databases, as
  postgres/init-roles.sql sets up in compose: MLOPS_POSTGRES_URL's (admin) user creates and drops them and the
  databases, and no component connects as it;
- two Celery workers [airflow-worker], each with its own working directory, temp directory and Airflow home
  under ``<data dir>/workers/<name>``, and its own TaskInstance hostname (``worker_hostname`` below);
- the lake on S3, served by moto in server mode [s3], which also holds MLflow's artifacts and the task logs;
- MLflow [mlflow] with a PostgreSQL backend store, S3 artifacts and the basic-auth app; the pipeline logs in
  as a non-admin user the setup creates, the admin password comes from the environment or is generated;
- the Snowflake emulator, as in the embedded profile.

Tasks hand data to each other only through the lake (S3), MLflow, the warehouse and XCom (the metadata DB).
Each worker records every file it opens under the profile's data directory or the system temp directory
(``<worker dir>/disk-audit.jsonl``), so a test can show that no task read another worker's local disk.

The object store is moto's in-memory server: it does not survive a stop, so ``down`` also drops the
profile's databases rather than leave runs and model versions pointing at artifacts that are gone.
The embedded profile's variables (MLOPS_*, AIRFLOW*, MLFLOW_*) do not leak in; settings of this profile (from the
environment, or ./.env as a dotenv file: localenv.DISTRIBUTED_NAMES):
MLOPS_DISTRIBUTED_DATA_DIR, MLOPS_POSTGRES_URL, MLOPS_REDIS_URL, MLFLOW_AUTH_ADMIN_PASSWORD,
MLOPS_MLFLOW_PIPELINE_PASSWORD (both generated into the data directory when unset). The database roles' passwords
are generated into the data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlplatform.config import REPO_ROOT
from mlplatform.dates import shift
from mlplatform.devstack.localenv import apply_dotenv, distributed_setting
from mlplatform.devstack.stack import (VENV_BIN, Component, _airflow_components, _persistent_secret, free_port,
                                       prepare_airflow_db, running, stack_env, start, stop, write_private)

DEFAULT_PORTS = {"warehouse": 8766, "mlflow": 5001, "airflow": 8081, "s3": 9100, "triggerer_logs": 8795}
PIPELINE_USER = "mlplatform-pipeline"
ADMIN_USER = "admin"
LEGACY_DEFAULT_ADMIN_PASSWORD = "password1234"  # what older MLflow versions shipped in basic_auth.ini; never used
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "moto-local", "AWS_SECRET_ACCESS_KEY": "moto-local", "AWS_DEFAULT_REGION": "us-east-1"}
AUDIT_FILE = "disk-audit.jsonl"
# Which service's role owns each database (compose: postgres/init-roles.sql).
DATABASE_OWNERS = {"airflow": "airflow", "mlflow": "mlflow", "mlflow_auth": "mlflow"}


@dataclass(frozen=True)
class Profile:
    """Where the profile keeps its state and which shared services it uses; everything else derives from it."""
    data_dir: Path
    ports: dict = field(default_factory=lambda: dict(DEFAULT_PORTS))
    db_prefix: str = "mlplatform"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432"
    redis_url: str = "redis://127.0.0.1:6379/3"
    queue: str = "mlplatform"
    workers: tuple[str, ...] = ("worker-1", "worker-2")
    concurrency: int = 1
    lake_bucket: str = "mlplatform-lake"
    mlflow_bucket: str = "mlplatform-mlflow"
    logs_bucket: str = "mlplatform-logs"

    @classmethod
    def from_env(cls) -> Profile:
        return cls(data_dir=Path(os.environ.get("MLOPS_DISTRIBUTED_DATA_DIR", REPO_ROOT / ".data-distributed")).resolve(),
                   postgres_url=os.environ.get("MLOPS_POSTGRES_URL", cls.postgres_url),
                   redis_url=os.environ.get("MLOPS_REDIS_URL", cls.redis_url))

    @classmethod
    def ephemeral(cls, data_dir: Path, **overrides) -> Profile:
        """Free ports, uniquely named databases, queue and workers: runs beside anything else on the machine."""
        token = secrets.token_hex(4)
        return cls(data_dir=Path(data_dir).resolve(), ports={name: free_port() for name in DEFAULT_PORTS},
                   db_prefix=f"mlplatform_t{token}", queue=f"mlplatform-{token}",
                   workers=(f"worker-1-{token}", f"worker-2-{token}"), **overrides)

    @property
    def databases(self) -> dict[str, str]:
        return {key: f"{self.db_prefix}_{key}" for key in DATABASE_OWNERS}

    @property
    def roles(self) -> dict[str, str]:
        """The PostgreSQL role of each service."""
        return {service: f"{self.db_prefix}_{service}" for service in dict.fromkeys(DATABASE_OWNERS.values())}

    def role_password(self, service: str) -> str:
        return _persistent_secret(self.data_dir / "postgres" / f".{service}_password")

    def sqlalchemy_url(self, database: str, driver: str = "psycopg") -> str:
        """The URL of one of the profile's databases, logged in as the role of the service that owns it."""
        from urllib.parse import quote, urlsplit

        service = DATABASE_OWNERS[database]
        host = urlsplit(self.postgres_url).netloc.rpartition("@")[2]
        login = f"{quote(self.roles[service], safe='')}:{quote(self.role_password(service), safe='')}"
        return f"postgresql+{driver}://{login}@{host}/{self.databases[database]}"

    def worker_dir(self, worker: str) -> Path:
        return self.data_dir / "workers" / worker

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"


# -- environment --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _without_profile_overrides():
    """stack_env lets existing variables win; hide the embedded profile's so they cannot leak in."""
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("MLOPS_", "AIRFLOW", "MLFLOW_"))}
    try:
        yield
    finally:
        os.environ.update(hidden)


def _secret_from_env(name: str, path: Path) -> str:
    """A secret from the environment, else one generated once into the data directory (mode 600)."""
    value = os.environ.get(name)
    if value:
        if value == LEGACY_DEFAULT_ADMIN_PASSWORD:
            raise ValueError(f"{name} is MLflow's old default admin password; choose another")
        return value
    return _persistent_secret(path)


def _ignored_by_git(data_dir: Path) -> None:
    """The data directory holds generated secrets: keep git from ever listing it (also outside .gitignore)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / ".gitignore"
    if not marker.exists():
        marker.write_text("# generated by mlplatform.devstack.distributed: local state and secrets, never committed\n*\n")


def profile_env(profile: Profile) -> dict[str, str]:
    """The environment every component and task of the profile shares (no admin secret in it)."""
    _ignored_by_git(profile.data_dir)
    with _without_profile_overrides():
        env = stack_env(profile.data_dir, profile.ports)
    airflow_db = profile.sqlalchemy_url("airflow")
    mlflow_dir = profile.data_dir / "mlflow"
    env.update({
        **DUMMY_AWS,
        "AWS_ENDPOINT_URL_S3": profile.s3_endpoint,
        "MLOPS_LAKE_URI": f"s3://{profile.lake_bucket}/lake",
        "MLOPS_OUTBOX": str(profile.data_dir / "outbox" / "slack.jsonl"),
        "MLFLOW_TRACKING_USERNAME": PIPELINE_USER,
        "MLFLOW_TRACKING_PASSWORD": _secret_from_env("MLOPS_MLFLOW_PIPELINE_PASSWORD", mlflow_dir / ".pipeline_password"),
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",  # as in stack_env: never unpickle an artifact
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mlplatform.devstack.distributed.worker_hostname",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": profile.sqlalchemy_url("airflow", "psycopg_async"),
        "AIRFLOW__CELERY__BROKER_URL": profile.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_db}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(profile.concurrency),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": profile.queue,
        # Task logs go to S3 like everything else; workers serve none from local disk.
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{profile.logs_bucket}/airflow",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "s3_logs",
        "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(profile.ports["triggerer_logs"]),
        "AIRFLOW_CONN_S3_LOGS": json.dumps({"conn_type": "aws", "extra": {"endpoint_url": profile.s3_endpoint,
                                                                          "region_name": DUMMY_AWS["AWS_DEFAULT_REGION"]}}),
    })
    return env


def component_env(profile: Profile, env: dict[str, str], name: str) -> dict[str, str]:
    """Per-component additions: the MLflow server's secrets, each worker's own directories and name."""
    if name == "mlflow":
        # The backend store's URL holds the MLflow role's password: in the environment, not on the command line.
        return {**env, "MLFLOW_BACKEND_STORE_URI": profile.sqlalchemy_url("mlflow"),
                "MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(profile)),
                "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USER, "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password(profile),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": _persistent_secret(profile.data_dir / "mlflow" / ".flask_secret"),
                "MLFLOW_S3_ENDPOINT_URL": profile.s3_endpoint}
    if name in profile.workers:
        home = profile.worker_dir(name)
        return {**env, "MLOPS_WORKER_NAME": name, "MLOPS_WORKER_DIR": str(home),
                "MLOPS_AUDIT_ROOTS": os.pathsep.join([str(profile.data_dir), _system_tmp()]),
                "TMPDIR": str(home / "tmp"), "AIRFLOW_HOME": str(home / "airflow"),
                "MLOPS_OUTBOX": str(home / "outbox" / "slack.jsonl")}
    return env


def admin_password(profile: Profile) -> str:
    return _secret_from_env("MLFLOW_AUTH_ADMIN_PASSWORD", profile.data_dir / "mlflow" / ".admin_password")


def write_auth_config(profile: Profile) -> Path:
    """MLflow's basic-auth config, owner-only: its database URL holds the MLflow role's password (the admin
    password is not in it: MLFLOW_AUTH_ADMIN_PASSWORD is)."""
    path = profile.data_dir / "mlflow" / "basic_auth.ini"
    write_private(path, "[mlflow]\n"
                        "default_permission = READ\n"
                        f"database_uri = {profile.sqlalchemy_url('mlflow_auth')}\n"
                        f"admin_username = {ADMIN_USER}\n"
                        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                        # Without it every request re-derives the password hash (PBKDF2): ~1 s each on a busy box.
                        "auth_cache_ttl_seconds = 60\n")
    return path


def _system_tmp() -> str:
    saved = {k: os.environ.pop(k) for k in ("TMPDIR", "TEMP", "TMP") if k in os.environ}
    try:
        tempfile.tempdir = None
        return str(Path(tempfile.gettempdir()).resolve())
    finally:
        os.environ.update(saved)
        tempfile.tempdir = None


def worker_hostname() -> str:
    """[core] hostname_callable: the worker's name, so task instances show which worker ran them.
    (In compose every worker container has its own hostname and the default callable is enough.)"""
    import socket

    return os.environ.get("MLOPS_WORKER_NAME") or socket.getfqdn()


# -- components ---------------------------------------------------------------------------------------
def components(profile: Profile, env: dict[str, str]) -> list[Component]:
    warehouse = Component("warehouse", profile.ports["warehouse"],
                          [sys.executable, "-m", "mlplatform.devstack.warehouse", "--port", str(profile.ports["warehouse"]),
                           "--db-dir", str(profile.data_dir / "warehouse"), "--seed"])
    supervised = [sys.executable, "-m", "mlplatform.devstack.supervise"]
    workers = [Component(name, None, [*supervised, sys.executable, "-m", "mlplatform.devstack.distributed", "run-worker",
                                      "celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", profile.queue,
                                      "--concurrency", str(profile.concurrency), "--skip-serve-logs",
                                      "--without-mingle", "--without-gossip"])
               for name in profile.workers]
    return [
        warehouse,
        Component("s3", profile.ports["s3"], [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(profile.ports["s3"])]),
        Component("mlflow", profile.ports["mlflow"],
                  [str(VENV_BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
                   "--port", str(profile.ports["mlflow"]), "--workers", "1",
                   "--artifacts-destination", f"s3://{profile.mlflow_bucket}/mlflow"]),
        *_airflow_components(env),
        *workers,
    ]


# -- shared services: PostgreSQL, Redis, S3, MLflow users ------------------------------------------------
def ensure_databases(profile: Profile) -> None:
    """As postgres/init-roles.sql does in compose, connected as MLOPS_POSTGRES_URL's admin: a plain login role per
    service (its password from the data directory) owning that service's databases, which only it may connect
    to. Re-runnable: an existing role gets its current password; an existing database must have its owner."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{profile.postgres_url}/postgres", autocommit=True) as conn:
        existing_roles = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}
        for service, role in profile.roles.items():
            statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if role in existing_roles else "CREATE ROLE {} LOGIN PASSWORD {}"
            conn.execute(sql.SQL(statement).format(sql.Identifier(role), sql.Literal(profile.role_password(service))))
        owners = dict(conn.execute("SELECT datname, pg_get_userbyid(datdba) FROM pg_database").fetchall())
        for key, name in profile.databases.items():
            owner = profile.roles[DATABASE_OWNERS[key]]
            if name not in owners:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            elif owners[name] != owner:
                raise RuntimeError(f"database {name} is owned by {owners[name]}, not by the role {owner}: it predates "
                                   f"the per-service roles; `make down-distributed` drops it (with its runs)")


def drop_databases(profile: Profile) -> None:
    """Drop the profile's databases, then its roles."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{profile.postgres_url}/postgres", autocommit=True) as conn:
        for name in profile.databases.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in profile.roles.values():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def purge_queue(profile: Profile) -> None:
    """Remove this profile's Celery queue from the broker (other queues in the same Redis DB stay)."""
    import redis

    client = redis.Redis.from_url(profile.redis_url)
    # kombu names its bindings _kombu.binding.<queue> (older) or _kombu.binding_permanent.<queue> (5.7).
    client.delete(profile.queue, *client.scan_iter(match=f"_kombu.binding*.{profile.queue}"))


def s3_client(profile: Profile):
    """boto3's S3 client for the profile's moto endpoint, with its dummy keys."""
    import boto3

    return boto3.client("s3", endpoint_url=profile.s3_endpoint, aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"], region_name=DUMMY_AWS["AWS_DEFAULT_REGION"])


def create_buckets(client, buckets: list[str]) -> None:
    from botocore.exceptions import ClientError

    for bucket in dict.fromkeys(buckets):
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket)


def ensure_buckets(profile: Profile) -> None:
    create_buckets(s3_client(profile), [profile.lake_bucket, profile.mlflow_bucket, profile.logs_bucket])


def ensure_mlflow_user(tracking_uri: str, admin: tuple[str, str], username: str, password: str) -> None:
    """Create a non-admin MLflow user, or reset its password to ``password`` if it exists."""
    import requests

    body = {"username": username, "password": password}
    resp = requests.post(f"{tracking_uri}/api/2.0/mlflow/users/create", json=body, auth=admin, timeout=30)
    if resp.status_code != 200 and "RESOURCE_ALREADY_EXISTS" in resp.text:
        resp = requests.patch(f"{tracking_uri}/api/2.0/mlflow/users/update-password", json=body, auth=admin, timeout=30)
    resp.raise_for_status()


def ensure_pipeline_user(profile: Profile, env: dict[str, str]) -> None:
    """The pipeline's own MLflow user: not an admin; it owns the experiments and models it creates."""
    ensure_mlflow_user(env["MLFLOW_TRACKING_URI"], (ADMIN_USER, admin_password(profile)),
                       env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])


def compose_mlflow_user() -> None:
    """docker-compose.yml's mlflow-init step: the pipeline's user, created with the admin's credentials."""
    ensure_mlflow_user(os.environ["MLFLOW_TRACKING_URI"],
                       (os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", ADMIN_USER), os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]),
                       os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])


# -- lifecycle ---------------------------------------------------------------------------------------------
def up(profile: Profile) -> dict[str, str]:
    """Start what is not running yet: first the services (warehouse, S3, MLflow) while the metadata DB is
    migrated (airflow-init), then the Airflow components and the workers, each phase in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    env = profile_env(profile)
    for worker in profile.workers:
        (profile.worker_dir(worker) / "tmp").mkdir(parents=True, exist_ok=True)
    ensure_databases(profile)
    services, airflow = [], []
    for component in components(profile, env):
        (services if component.name in ("warehouse", "s3", "mlflow") else airflow).append(component)

    def launch(component: Component) -> None:
        where = f" on 127.0.0.1:{component.port}" if component.port else ""
        if running(component, env):
            print(f"{component.name} already running{where}", flush=True)
        else:
            print(f"starting {component.name}{where}", flush=True)
            start(component, component_env(profile, env, component.name))
        if component.name == "s3":
            ensure_buckets(profile)
        elif component.name == "mlflow":
            ensure_pipeline_user(profile, env)

    with ThreadPoolExecutor(max_workers=len(airflow)) as pool:
        for phase in ([lambda: prepare_airflow_db(env), *[lambda c=c: launch(c) for c in services]],
                      [lambda c=c: launch(c) for c in airflow]):
            for future in [pool.submit(step) for step in phase]:
                future.result()
    print("distributed profile is up", flush=True)
    return env


def down(profile: Profile, drop: bool = True) -> None:
    env = profile_env(profile)
    for component in reversed(components(profile, env)):
        stop(component, env)
        print(f"stopped {component.name}")
    if drop:
        drop_databases(profile)
        purge_queue(profile)
        print(f"dropped databases {', '.join(profile.databases.values())}, roles {', '.join(profile.roles.values())} "
              f"and queue {profile.queue}")


def status(profile: Profile) -> None:
    env = profile_env(profile)
    for component in components(profile, env):
        print(f"{component.name:22} {component.port or '-':>6} {'up' if running(component, env) else 'down'}")


# -- a worker process -------------------------------------------------------------------------------------
_audit_state = threading.local()


def _install_disk_audit(own_dir: Path, roots: list[str]) -> None:
    """Record every file this process (and every process it forks: Celery's pool, each task) opens under
    ``roots``, as JSON lines in ``<own_dir>/disk-audit.jsonl``: the path, whether it was opened for writing,
    and whether it lies in the worker's own directory. Reads of paths that do not exist are not recorded.
    The hook never raises."""
    own = str(own_dir.resolve())
    record = os.path.join(own, AUDIT_FILE)
    prefixes = tuple(os.path.join(r, "") for r in roots)

    def hook(event: str, args: tuple) -> None:
        if event != "open" or getattr(_audit_state, "busy", False):
            return
        try:
            _audit_state.busy = True
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            path = os.path.abspath(os.fsdecode(path))
            if not path.startswith(prefixes) or path == record:
                return
            writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)) if isinstance(flags, int) and flags else \
                any(c in (mode or "") for c in "wax+")
            if not writing and not os.path.exists(path):
                return  # a probe that finds nothing (e.g. GitPython looking for a repository upwards) reads nothing
            line = json.dumps({"pid": os.getpid(), "path": path, "write": writing,
                               "own": path == own or path.startswith(own + os.sep)}) + "\n"
            fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except Exception:  # noqa: BLE001 - an audit hook must never break the code it watches
            pass
        finally:
            _audit_state.busy = False

    sys.addaudithook(hook)


def run_worker(airflow_args: list[str]) -> None:
    """Run ``airflow <args>`` in this process, from the worker's own directory, with the disk audit on."""
    own_dir = Path(os.environ["MLOPS_WORKER_DIR"])
    (own_dir / "tmp").mkdir(parents=True, exist_ok=True)
    os.chdir(own_dir)
    roots = [r for r in os.environ.get("MLOPS_AUDIT_ROOTS", "").split(os.pathsep) if r]
    _install_disk_audit(own_dir, roots)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *airflow_args]
    airflow_main()


def disk_audit(profile: Profile) -> dict[str, list[dict]]:
    """Each worker's audit records."""
    out = {}
    for worker in profile.workers:
        path = profile.worker_dir(worker) / AUDIT_FILE
        out[worker] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return out


# -- measuring throughput -------------------------------------------------------------------------------------
def seed_history(env: dict[str, str], model: str, days: list[str], cwd: Path) -> None:
    """Ingest history with the platform's own jobs, straight into the profile's lake, in a child process (so
    no client for the profile's endpoints stays cached in the caller). Faster than one Airflow run per day."""
    import subprocess

    code = ("import sys\nfrom mlplatform import ingest\n"
            "for ds in sys.argv[2:]:\n    ingest.ingest_labels(sys.argv[1], ds)\n    ingest.ingest_features(sys.argv[1], ds)\n")
    subprocess.run([sys.executable, "-c", code, model, *days], env={**os.environ, **env}, cwd=cwd, check=True,
                   capture_output=True, timeout=1800)


def run_pipeline(api, model: str, replay_days: list[str], search_budget: int = 0, timeout: float = 3600) -> dict:
    """Through the scheduler: train with the cut-off at the day before the first replayed day (the last seeded
    day: a cut-off must be a labelled day), then backfill ingest over the replayed days (score and monitor
    follow through Assets). Returns the wall time of each phase."""
    dags = [f"{model}__{stage}" for stage in ("ingest", "score", "monitor", "train")]
    api.wait_for_dags(dags, timeout=600)
    timings = {}
    started = time.monotonic()
    cutoff = shift(replay_days[0], -1)
    api.trigger(f"{model}__train", f"initial__{cutoff}", None,
                {"cutoff_ds": cutoff, "reason": "initial", "search_budget": search_budget})
    api.wait_until_idle(dags, timeout=timeout)
    timings["train_s"] = time.monotonic() - started
    started = time.monotonic()
    api.backfill(f"{model}__ingest", replay_days[0], replay_days[-1], max_active_runs=4)
    api.wait_until_idle(dags, timeout=timeout)
    timings["replay_s"] = time.monotonic() - started
    timings["model_days_per_hour"] = len(replay_days) / timings["replay_s"] * 3600
    return timings


def _task_stats(api) -> dict:
    """How many task instances ran, their mean duration, and how many each host ran."""
    tis = [t for t in api.task_instances() if t.get("duration") is not None and t["state"] == "success"]
    hosts: dict[str, int] = {}
    for t in tis:
        hosts[t["hostname"]] = hosts.get(t["hostname"], 0) + 1
    return {"tasks_run": len(tis), "mean_task_s": sum(t["duration"] for t in tis) / max(len(tis), 1), "tasks_per_host": hosts}


def measure(profile_name: str, history: list[str], replay_days: list[str], search_budget: int = 0,
            workdir: Path | None = None, concurrency: int = 1) -> dict:
    """Start a fresh profile on free ports in its own directory, seed the history, run the pipeline, tear
    down. Model-days per hour = replayed days (ingest + score + monitor each) / wall time of the replay."""
    from mlplatform.config import model_configs
    from mlplatform.devstack.airflow_api import AirflowApi
    from mlplatform.devstack.stack import components as embedded_components

    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"mlplatform-measure-{profile_name}-"))
    model = model_configs()[0].name
    started = time.monotonic()
    if profile_name == "distributed":
        profile = Profile.ephemeral(workdir / "data", concurrency=concurrency)
        env = up(profile)
        stopper = (lambda: down(profile))
    else:
        with _without_profile_overrides():
            env = stack_env(workdir / "data", {name: free_port() for name in ("warehouse", "mlflow", "airflow")})
        # Log servers on free ports too, so a running `make up` cannot clash with the measurement.
        env.update({"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())})
        parts = embedded_components(env)
        stopper = (lambda: [stop(c, env) for c in reversed(parts)])
        prepare_airflow_db(env)
        for component in parts:
            start(component, env)
    timings = {"up_s": time.monotonic() - started}
    try:
        started = time.monotonic()
        seed_history(env, model, history, workdir)
        timings["seed_history_s"] = time.monotonic() - started
        api = AirflowApi.local_admin(env["MLOPS_AIRFLOW_URL"], Path(env["AIRFLOW_HOME"]))
        timings.update(run_pipeline(api, model, replay_days, search_budget))
        states = {stage: sorted({r["state"] for r in api.runs(f"{model}__{stage}")})
                  for stage in ("ingest", "score", "monitor", "train")}
        timings.update(_task_stats(api))
    finally:
        stopper()
    return {"profile": profile_name, "concurrency_per_worker": concurrency if profile_name == "distributed" else None,
            "model": model, "history": [history[0], history[-1]],
            "replay": [replay_days[0], replay_days[-1]], "replayed_days": len(replay_days),
            "search_budget": search_budget, **{k: round(v, 1) if isinstance(v, float) else v for k, v in timings.items()},
            "run_states": states,
            "load_average": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run-worker":
        run_worker(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env", "measure", "mlflow-user"],
                        nargs="?", default="status")
    parser.add_argument("--keep-databases", action="store_true", help="down: stop processes only")
    parser.add_argument("--profile", choices=["distributed", "embedded"], default="distributed")
    parser.add_argument("--history", nargs=2, default=["2013-01-19", "2013-01-31"], metavar=("FIRST", "LAST"),
                        help="measure: days ingested before the first training (directly, not through Airflow)")
    parser.add_argument("--replay", nargs=2, default=["2013-02-01", "2013-02-07"], metavar=("FIRST", "LAST"),
                        help="measure: days run through ingest -> score -> monitor by the scheduler")
    parser.add_argument("--search-budget", type=int, default=0, help="measure: the first training's search budget")
    parser.add_argument("--concurrency", type=int, default=1, help="measure: task slots per Celery worker")
    args = parser.parse_args(argv)
    apply_dotenv(distributed_setting)
    profile = Profile.from_env()
    if args.command == "up":
        env = up(profile)
        print(f"  Airflow {env['MLOPS_AIRFLOW_URL']} (user admin, password in "
              f"{env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated)\n"
              f"  MLflow  {env['MLFLOW_TRACKING_URI']} (admin password in {profile.data_dir}/mlflow/.admin_password "
              f"unless MLFLOW_AUTH_ADMIN_PASSWORD is set)\n  S3      {profile.s3_endpoint}")
    elif args.command == "down":
        down(profile, drop=not args.keep_databases)
    elif args.command == "env":
        for key, value in sorted(profile_env(profile).items()):
            print(f"export {key}={shlex.quote(value)}")
    elif args.command == "mlflow-user":
        compose_mlflow_user()
    elif args.command == "measure":
        from mlplatform.dates import day_range

        print(json.dumps(measure(args.profile, day_range(*args.history), day_range(*args.replay), args.search_budget,
                                 concurrency=args.concurrency), indent=2))
    else:
        status(profile)


if __name__ == "__main__":
    main()
