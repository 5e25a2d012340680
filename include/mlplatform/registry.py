"""MLflow: log runs, register versions, move aliases. Aliases only, never the deprecated stages."""

from __future__ import annotations

import logging
import subprocess
from functools import lru_cache
from typing import TYPE_CHECKING

from mlplatform.config import REPO_ROOT, ModelConfig
from mlplatform.faults import pause_point

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
    """The version's model, in memory. The download goes to a directory removed on return: otherwise
    every task would leave a model copy in the worker's temp directory."""
    import tempfile

    import mlflow.sklearn

    with tempfile.TemporaryDirectory(prefix="mlplatform-model-") as download:
        return mlflow.sklearn.load_model(f"models:/{name}/{version}", dst_path=download)


def trusted_types(model) -> list[str]:
    """The exact non-default types in this pipeline: declared so skops never loads anything else."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


def _runtime_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]


def _log_candidates(candidates: list, tags: dict) -> None:
    """One child run per searched candidate, so the MLflow UI compares them side by side under the parent."""
    import mlflow

    for rank, candidate in enumerate(candidates, start=1):
        if not candidate.fold_auc:
            continue
        with mlflow.start_run(run_name=f"{rank:02d}-{candidate.family}", nested=True):
            mlflow.set_tags({**tags, "search_rank": str(rank), "family": candidate.family})
            mlflow.log_params({"family": candidate.family, **candidate.params})
            mlflow.log_metrics({"cv_roc_auc_mean": candidate.mean_auc,
                                **{f"cv_roc_auc_fold_{i}": auc for i, auc in enumerate(candidate.fold_auc)}})


def log_training_run(cfg: ModelConfig, model, train_frame: "pd.DataFrame", features: "pd.DataFrame",
                     metrics: dict, params: dict, tags: dict, dataset_info: dict, extra_json: dict,
                     candidates: list = ()) -> tuple[str, str]:
    """Log the training (parent) run with its search candidates (child runs) and register the
    chosen model; return (run_id, version)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.set_experiment(cfg.name)
    with mlflow.start_run(run_name=f"train-{tags.get('cutoff_ds', '')}") as run:
        mlflow.set_tags({**tags, "mlflow.source.git.commit": code_version(), "code_version": code_version()})
        mlflow.log_params(params)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        if candidates and candidates[0].fold_auc:
            mlflow.log_metric("cv_roc_auc_best", candidates[0].mean_auc)
        _log_candidates(list(candidates), tags)
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
        pause_point("training.registered")  # the version exists, the run is still RUNNING
        return run.info.run_id, str(info.registered_model_version)


def end_unfinished_runs(mlc: "MlflowClient", experiment: str, tag: str, value: str) -> list[str]:
    """Runs of ``experiment`` tagged ``tag = value`` and still RUNNING (their process was killed or timed out)
    end as FAILED. Returns their ids."""
    found = mlc.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = mlc.search_runs([found.experiment_id], f"tags.{tag} = '{_quoted(value)}' and attributes.status = 'RUNNING'")
    for run in runs:
        mlc.set_terminated(run.info.run_id, status="FAILED")
        log.warning("MLflow run %s (%s = %s) was left RUNNING by a dead try: now FAILED", run.info.run_id, tag, value)
    return [run.info.run_id for run in runs]


def registered_by_tag(mlc: "MlflowClient", name: str, tag: str, value: str) -> tuple[str, str] | None:
    """(run_id, version) of the model version of ``name`` registered by a run tagged ``tag = value``, if any,
    whatever the run's status: a try may have died after registering."""
    found = mlc.get_experiment_by_name(name)
    if found is None:
        return None
    for run in mlc.search_runs([found.experiment_id], f"tags.{tag} = '{_quoted(value)}'"):
        versions = mlc.search_model_versions(f"name = '{_quoted(name)}' and run_id = '{run.info.run_id}'")
        ready = sorted((v for v in versions if v.status == "READY"), key=lambda v: int(v.version))
        if ready:
            return run.info.run_id, str(ready[0].version)
    return None


def _quoted(value: str) -> str:
    if "'" in value:
        raise ValueError(f"a quote in {value!r} cannot go into an MLflow search filter")
    return value


def set_alias(mlc: "MlflowClient", name: str, alias: str, version: str) -> None:
    mlc.set_registered_model_alias(name, alias, version)
    log.info("alias %s of %s now points at version %s", alias, name, version)


def log_monitoring_run(model: str, ds: str, scored_by, metrics: dict[str, float], artifacts: dict) -> str:
    """One MLflow run per model and day in the ``<model>-monitoring`` experiment, tagged with the
    version that made the predictions, its metrics also attached to that version's logged model.
    A re-run for the same day reuses the run, so re-running monitoring does not duplicate it."""
    import mlflow

    experiment = mlflow.set_experiment(f"{model}-monitoring")
    existing = mlflow.search_runs([experiment.experiment_id], f"tags.ds = '{ds}'", output_format="list", max_results=1)
    with mlflow.start_run(run_id=existing[0].info.run_id if existing else None, run_name=f"monitor-{ds}") as run:
        mlflow.set_tags({"ds": ds, "model_name": model, "model_version": str(scored_by.version),
                         "model_run_id": scored_by.run_id or ""})
        mlflow.log_metrics(metrics, model_id=getattr(scored_by, "model_id", None))
        for name, content in artifacts.items():
            if isinstance(content, str):
                mlflow.log_text(content, f"reports/{name}")
            else:
                mlflow.log_dict(content, f"reports/{name}")
        return run.info.run_id
