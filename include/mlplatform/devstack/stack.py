"""The embedded local stack: warehouse emulator, MLflow server and Airflow 3 as local processes.

    python -m mlplatform.devstack.stack up|down|status|env

All state lives under MLOPS_DATA_DIR (default .data/). Every setting can be overridden from
the environment or from ./.env, read as a dotenv file (mlplatform.devstack.localenv); see .env.example.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mlplatform.config import PROMOTION_POOL, REPO_ROOT
from mlplatform.devstack.localenv import apply_dotenv, embedded_setting

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _new_private_file(path: Path, text: str) -> None:
    """Create ``path`` holding ``text``, readable by its owner only from the moment it exists (mode 0600 given to
    os.open, never a chmod after writing); fails if the path exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _private_temp_beside(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    _new_private_file(temp, text)
    return temp


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, owner-only throughout: a new 0600 file renamed over it."""
    temp = _private_temp_beside(path, text)
    try:
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _persistent_secret(path: Path) -> str:
    """A random local secret, generated once and kept in the data directory (never in the repo), owner-only
    (0600) from creation. Linked into place complete, so a concurrent reader never sees it half-written; if two
    processes race, the first one's secret is kept."""
    if not path.exists():
        temp = _private_temp_beside(path, secrets.token_urlsafe(64))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return path.read_text().strip()


def stack_env(data_dir: Path | None = None, ports: dict | None = None) -> dict[str, str]:
    """The environment every component and task runs with. Existing variables win."""
    data_dir = Path(data_dir or os.environ.get("MLOPS_DATA_DIR", REPO_ROOT / ".data")).resolve()
    ports = {"warehouse": 8765, "mlflow": 5000, "airflow": 8080, **(ports or {})}
    airflow_home = data_dir / "airflow"
    warehouse_conn = {
        "conn_type": "snowflake", "login": "local", "password": "local", "schema": "RAW",
        "extra": {"account": "fakesnow", "database": "FLIGHTS", "host": "127.0.0.1",
                  "port": ports["warehouse"], "protocol": "http",
                  # the emulator has no telemetry endpoint; the stock hook passes session_parameters through
                  "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False}},
    }
    defaults = {
        "MLOPS_DATA_DIR": str(data_dir),
        "MLOPS_LAKE_URI": (data_dir / "lake").as_uri(),
        "MLOPS_WAREHOUSE_PORT": str(ports["warehouse"]),
        "MLOPS_AIRFLOW_URL": f"http://127.0.0.1:{ports['airflow']}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "MLFLOW_PORT": str(ports["mlflow"]),
        # MLflow draws tqdm bars on stderr while it moves artifacts; Airflow logs a task's stderr at error level.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "AIRFLOW_CONN_WAREHOUSE": json.dumps(warehouse_conn),
        # A Slack webhook connection without a token: alerts go to the outbox until one is configured.
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps({"conn_type": "slackwebhook"}),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        # One OpenMP thread per task: with several tasks and the Airflow components on 2 cores, the booster's
        # threads spin at every barrier while a sibling is descheduled (a fit measured 55-80 s with 2 threads,
        # 2.5-3.5 s with 1, under load). Parallelism comes from running tasks side by side.
        "OMP_NUM_THREADS": "1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports["airflow"]),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{ports['airflow']}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{ports['airflow']}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": _persistent_secret(airflow_home / ".jwt_secret"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "PYTHONPATH": str(REPO_ROOT / "include"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env = {**defaults, **{k: os.environ[k] for k in defaults if k in os.environ}}
    # Not overridable: MLflow would otherwise unpickle artifacts. The platform loads only skops models
    # itself (registry.load_version); this closes MLflow's own loaders too.
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    # Airflow components start helpers as `airflow ...` found on PATH.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class Component:
    name: str
    port: int | None  # None: a worker process with no port; ready once it has stayed up for a few seconds
    command: list[str]

    def pidfile(self, data_dir: Path) -> Path:
        return data_dir / "run" / f"{self.name}.pid"


def components(env: dict[str, str]) -> list[Component]:
    data_dir = Path(env["MLOPS_DATA_DIR"])
    mlflow_dir = data_dir / "mlflow"
    return [
        Component("warehouse", int(env["MLOPS_WAREHOUSE_PORT"]),
                  [sys.executable, "-m", "mlplatform.devstack.warehouse", "--port", env["MLOPS_WAREHOUSE_PORT"],
                   "--db-dir", str(data_dir / "warehouse"), "--seed"]),
        Component("mlflow", int(env["MLFLOW_PORT"]),
                  [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", env["MLFLOW_PORT"],
                   "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{mlflow_dir}/mlflow.db",
                   "--artifacts-destination", str(mlflow_dir / "artifacts")]),
        *_airflow_components(env),
    ]


def _airflow_components(env: dict[str, str]) -> list[Component]:
    """The four Airflow 3 services, each restarted if it exits (see supervise.py)."""
    supervised = [sys.executable, "-m", "mlplatform.devstack.supervise", str(VENV_BIN / "airflow")]
    return [
        Component("airflow-api-server", int(env["AIRFLOW__API__PORT"]), [*supervised, "api-server"]),
        Component("airflow-scheduler", None, [*supervised, "scheduler"]),
        Component("airflow-dag-processor", None, [*supervised, "dag-processor"]),
        Component("airflow-triggerer", None, [*supervised, "triggerer"]),
    ]


def prepare_airflow_db(env: dict[str, str]) -> None:
    """Migrate the metadata DB and create the pool that serialises promotions (as airflow-init does)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    for args in (["db", "migrate"],
                 ["pools", "set", PROMOTION_POOL, "1", "Promotions and rollbacks, one at a time"]):
        subprocess.run([str(VENV_BIN / "airflow"), *args], env={**os.environ, **env}, check=True,
                       stdout=subprocess.DEVNULL, cwd=REPO_ROOT)


def start(component: Component, env: dict[str, str], timeout: float = 600) -> None:
    data_dir = Path(env["MLOPS_DATA_DIR"])
    if component.port and port_open(component.port):
        raise RuntimeError(f"port {component.port} for {component.name} is already taken; run `make down` first")
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (data_dir / "run").mkdir(parents=True, exist_ok=True)
    (data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    logfile = open(data_dir / "logs" / f"{component.name}.log", "ab")
    proc = subprocess.Popen(component.command, env={**os.environ, **env}, stdout=logfile, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO_ROOT)
    component.pidfile(data_dir).write_text(str(proc.pid))
    deadline = time.monotonic() + (timeout if component.port else 5)
    while not (port_open(component.port) if component.port else time.monotonic() > deadline):
        if proc.poll() is not None:
            raise RuntimeError(f"{component.name} exited with {proc.returncode}; see {data_dir}/logs/{component.name}.log")
        if component.port and time.monotonic() > deadline:
            raise TimeoutError(f"{component.name} did not open port {component.port} in {timeout}s")
        time.sleep(0.5)


def _gone(pid: int) -> bool:
    """True once no process of the group is left. Reaps the leader first when it is our own child,
    since an unreaped (zombie) leader would keep the group visible forever."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # started by another process (e.g. `make up`): its parent or init reaps it
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop(component: Component, env: dict[str, str]) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the component's process group, until it is gone."""
    pidfile = component.pidfile(Path(env["MLOPS_DATA_DIR"]))
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    for sig, grace_s in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not _gone(pid):
            time.sleep(0.2)
        if _gone(pid):
            break
    pidfile.unlink(missing_ok=True)


def running(component: Component, env: dict[str, str]) -> bool:
    pidfile = component.pidfile(Path(env["MLOPS_DATA_DIR"]))
    if not pidfile.exists():
        return False
    try:
        os.killpg(int(pidfile.read_text()), 0)
    except ProcessLookupError:
        return False
    return port_open(component.port) if component.port else True


def up(env: dict[str, str]) -> None:
    prepare_airflow_db(env)
    for component in components(env):
        if running(component, env):
            print(f"{component.name} already running on 127.0.0.1:{component.port}")
            continue
        print(f"starting {component.name}" + (f" on 127.0.0.1:{component.port}" if component.port else ""), flush=True)
        start(component, env)
    print("stack is up")


def down(env: dict[str, str]) -> None:
    for component in reversed(components(env)):
        stop(component, env)
        print(f"stopped {component.name}")


def main(argv: list[str] | None = None) -> None:
    command = (argv or sys.argv[1:] or ["status"])[0]
    from_dotenv = apply_dotenv(embedded_setting)
    env = stack_env()
    if command == "up":
        up(env)
    elif command == "down":
        down(env)
    elif command == "env":  # for eval in a shell: quoted so every value arrives unchanged
        for key, value in sorted({**from_dotenv, **env}.items()):
            print(f"export {key}={shlex.quote(value)}")
    else:
        for component in components(env):
            print(f"{component.name:22} {component.port or '-':>6} {'up' if running(component, env) else 'down'}")


if __name__ == "__main__":
    main()
