"""Local settings from ``.env``, parsed as a dotenv file (python-dotenv), never as Makefile syntax.

    python -m mlplatform.devstack.localenv COMMAND [ARGS...]

runs COMMAND with the embedded stack's environment (``stack_env``) and the platform's settings from ``./.env``
(the current directory's, as for make and docker-compose); the Makefile's recipes go through it, and the stack's
own entry points (``stack``, ``distributed``) read the file themselves.

Values arrive as written: nothing is expanded (``$`` stays ``$``), and ``#`` or quotes inside a quoted value are
kept. Each profile applies only the variables it reads, so the rest of ``.env`` (the docker-compose secrets and
settings) never reaches a local process. A variable already in the environment wins over the file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

# What the embedded stack, the platform's jobs and the make targets read (config.Settings, stack_env, demo,
# evidently_workspace, the Airflow plugin), plus any Airflow setting or connection.
EMBEDDED_NAMES = frozenset({
    "MLOPS_DATA_DIR", "MLOPS_LAKE_URI", "MLOPS_MODELS_DIR", "MLOPS_WAREHOUSE_CONN_ID", "MLOPS_WAREHOUSE_LAKE_STAGE",
    "MLOPS_SLACK_CONN_ID",
    "MLOPS_OUTBOX", "MLOPS_AIRFLOW_URL", "MLOPS_WAREHOUSE_PORT", "MLOPS_EVIDENTLY_WORKSPACE",
    "MLFLOW_TRACKING_URI", "MLFLOW_PORT", "MLFLOW_UI_URL", "AIRFLOW_HOME",
    "DEMO_HISTORY_START", "DEMO_REPLAY_START", "DEMO_REPLAY_END",
})
EMBEDDED_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_")
# What the distributed profile reads (devstack/distributed.py); it ignores the embedded settings.
DISTRIBUTED_NAMES = frozenset({
    "MLOPS_DISTRIBUTED_DATA_DIR", "MLOPS_POSTGRES_URL", "MLOPS_REDIS_URL",
    "MLFLOW_AUTH_ADMIN_PASSWORD", "MLOPS_MLFLOW_PIPELINE_PASSWORD",
})


def embedded_setting(name: str) -> bool:
    return name in EMBEDDED_NAMES or name.startswith(EMBEDDED_PREFIXES)


def distributed_setting(name: str) -> bool:
    return name in DISTRIBUTED_NAMES


def dotenv_settings(wanted: Callable[[str], bool], path: Path = Path(".env")) -> dict[str, str]:
    """The variables of the dotenv file at ``path`` (none if there is no file) that ``wanted`` accepts."""
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    return {name: value for name, value in dotenv_values(path, interpolate=False).items()
            if value is not None and wanted(name)}


def apply_dotenv(wanted: Callable[[str], bool], path: Path = Path(".env")) -> dict[str, str]:
    """Set the wanted variables of ``.env`` in this process's environment where they are not set already;
    returns those it set."""
    applied = {name: value for name, value in dotenv_settings(wanted, path).items() if name not in os.environ}
    os.environ.update(applied)
    return applied


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.exit(f"usage: {sys.executable} -m mlplatform.devstack.localenv COMMAND [ARGS...]")
    from mlplatform.devstack.stack import stack_env

    apply_dotenv(embedded_setting)
    os.execvpe(argv[0], argv, {**os.environ, **stack_env()})


if __name__ == "__main__":
    main()
