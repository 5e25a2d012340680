"""MLflow: log runs, register versions, move aliases. Aliases only, never the deprecated stages."""

from __future__ import annotations

import logging
import subprocess
from functools import lru_cache
from typing import TYPE_CHECKING

from mlplatform.config import REPO_ROOT, ModelConfig

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def client(tracking_uri: str) -> "MlflowClient":
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def version_by_alias(mlc: "MlflowClient", name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return mlc.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def load_version(name: str, version: str):
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def trusted_types(model) -> list[str]:
    """The exact non-default types in this pipeline: declared so skops never loads anything else."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


def _runtime_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]


def log_training_run(cfg: ModelConfig, model, train_frame: "pd.DataFrame", features: "pd.DataFrame",
                     metrics: dict, params: dict, tags: dict, dataset_info: dict, extra_json: dict) -> tuple[str, str]:
    """Log one training run and register its model; return (run_id, version)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.set_experiment(cfg.name)
    with mlflow.start_run(run_name=f"train-{tags.get('cutoff_ds', '')}") as run:
        mlflow.set_tags({**tags, "mlflow.source.git.commit": code_version(), "code_version": code_version()})
        mlflow.log_params(params)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        dataset = mlflow.data.from_pandas(train_frame, name=f"{cfg.name}-training", digest=dataset_info["version"],
                                          targets=cfg.target.name)
        mlflow.log_input(dataset, context="training", tags={"version": dataset_info["version"]})
        for name, obj in extra_json.items():
            mlflow.log_dict(obj, name)
        example = features.head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=trusted_types(model),
            registered_model_name=cfg.name,
            # Declared, not inferred: inference re-loads the model in a subprocess and costs ~25 s.
            pip_requirements=_runtime_requirements(),
        )
        return run.info.run_id, str(info.registered_model_version)


def set_alias(mlc: "MlflowClient", name: str, alias: str, version: str) -> None:
    mlc.set_registered_model_alias(name, alias, version)
    log.info("alias %s of %s now points at version %s", alias, name, version)
