"""MLflow: log runs, register versions, move aliases. Aliases only, never the deprecated stages."""

from __future__ import annotations

import logging
import os
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from mlplatform.config import REPO_ROOT, ModelConfig
from mlplatform.faults import pause_point

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

# MLflow 3 tells model training from GenAI work by this experiment tag; every experiment the platform creates
# carries it. (The 3.17 UI itself follows the ``workflowType`` of its address, which the reports page's links set.)
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# The parent run's holdout metrics as MLflow shows them: MLflow lists metrics by name, so they are short,
# ``holdout.auc`` comes first, and the search's metrics (``search.*``, also on the candidates) come after.
HOLDOUT_METRICS = {"roc_auc": "holdout.auc", "brier": "holdout.brier", "log_loss": "holdout.log_loss",
                   "positive_rate": "holdout.positive_rate", "precision": "holdout.precision",
                   "recall": "holdout.recall", "rows": "holdout.rows"}
BEST_CV_AUC, CV_AUC = "search.best_cv_auc", "search.cv_auc"
# A saved view of the training experiment's runs with the holdout metrics as the first columns. The MLflow 3
# UI keeps saved views as experiment tags ``mlflow.sharedViewState.<id>`` and opens one with
# ``?viewStateShareKey=<id>``; columns are named by the runs table's column ids.
TRAININGS_VIEW = "trainings"
TRAININGS_VIEW_TAG = f"mlflow.sharedViewState.{TRAININGS_VIEW}"
TRAININGS_VIEW_METRICS = tuple(f"metrics.`{name}`" for name in ("holdout.auc", "holdout.log_loss", "holdout.brier",
                                                                 BEST_CV_AUC))
TRAININGS_VIEW_COLUMNS = (*TRAININGS_VIEW_METRICS, "params.`family`", "tags.`trigger_reason`", "tags.`cutoff_ds`",
                          "attributes.`Models`")


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


def alias_absent(tracking_uri: str, name: str, alias: str) -> bool:
    """True only when the tracking server says ``name`` has no version under ``alias`` (or no model of that
    name), asked over its REST API with requests: importing mlflow costs seconds, and this answers a run that
    has nothing to do. False for any other answer (an alias, an error, a server out of reach, a tracking URI
    that is not a server), so the caller takes the full path and decides there.

    Credentials come from the variables MLflow's own client reads: MLFLOW_TRACKING_USERNAME and _PASSWORD,
    or _TOKEN, and the TLS settings; credentials kept elsewhere get a refusal, hence False."""
    import requests

    if not tracking_uri.startswith(("http://", "https://")):
        return False
    try:
        response = requests.get(f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/get",
                                params={"name": name}, timeout=30, **_rest_credentials())
        answer = response.json()
    except (requests.RequestException, ValueError) as exc:  # out of reach, or not MLflow answering
        log.info("could not ask %s about %s@%s without mlflow: %s", tracking_uri, name, alias, exc)
        return False
    if not isinstance(answer, dict):
        return False
    if response.status_code == 404:
        return answer.get("error_code") == "RESOURCE_DOES_NOT_EXIST"
    if response.status_code != 200 or "registered_model" not in answer:
        return False
    return all(a.get("alias") != alias for a in answer["registered_model"].get("aliases", []))


def _rest_credentials() -> dict:
    env = os.environ
    kwargs: dict = {}
    if env.get("MLFLOW_TRACKING_TOKEN"):
        kwargs["headers"] = {"Authorization": f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"}
    elif env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
        kwargs["auth"] = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        kwargs["verify"] = False
    elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        kwargs["verify"] = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        kwargs["cert"] = env["MLFLOW_TRACKING_CLIENT_CERT_PATH"]
    return kwargs


class UntrustedModel(Exception):
    """A model the platform refuses to load or register: not a skops model, or holding a type outside
    the repository's allowlist (``training.SKOPS_TRUSTED_TYPES``). Retrying cannot make it safe."""


SKOPS_FILE = "model.skops"  # where MLflow's sklearn flavor puts a skops model in the artifact


def load_version(name: str, version: str):
    """The version's model, in memory, loaded without running code from the artifact.

    MLflow's own loader takes the format and the skops trusted types from the artifact's ``MLmodel``, so
    the artifact would decide what it trusts. Here only a skops file is loaded, trusting only the
    repository's allowlist, after skops has listed the file's types without loading it; anything else
    raises UntrustedModel. The download goes to a directory removed on return: otherwise every task
    would leave a model copy in the worker's temp directory."""
    import tempfile

    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="mlplatform-model-") as download:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=download)
        return load_model_dir(Path(local), f"{name} v{version}")


def load_model_dir(model_dir: Path, label: str):
    """The model in a downloaded MLflow sklearn artifact, if it is a skops file within the allowlist;
    ``label`` names it in errors (e.g. "flight_delay v3")."""
    import zipfile

    import skops.io

    from mlplatform.training import trusted_model_types

    fmt = _serialization_format(model_dir)
    if fmt != "skops":
        raise UntrustedModel(f"untrusted model artifact: {label} is serialized as {fmt!r}; the platform loads "
                             "only skops models, so it was not loaded")
    path = model_dir / SKOPS_FILE
    if not path.is_file():
        raise UntrustedModel(f"untrusted model artifact: {label} has no {SKOPS_FILE}")
    allowed = trusted_model_types()
    try:
        found = skops.io.get_untrusted_types(file=path)  # reads the file's schema; builds no object
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:  # not a skops archive (e.g. a pickle renamed)
        raise UntrustedModel(f"untrusted model artifact: {label}'s {SKOPS_FILE} is not a skops file ({exc})") from exc
    outside = sorted(set(found) - set(allowed))
    if outside:
        raise UntrustedModel(f"untrusted model artifact: {label} holds types outside the platform's allowlist "
                             f"(training.SKOPS_TRUSTED_TYPES): {outside}; it was not loaded")
    return skops.io.load(path, trusted=allowed)


def _serialization_format(model_dir: Path) -> str:
    """The format the artifact's MLmodel declares for its sklearn flavor (read, never trusted for types)."""
    import yaml

    try:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return "unknown (no readable MLmodel)"
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        return "unknown (no sklearn flavor)"
    return str(flavor.get("serialization_format", "pickle"))  # MLflow's default when the key is absent


def trusted_types(model) -> list[str]:
    """The allowlist to register ``model`` with, once its own non-default types are checked to be within it:
    what could not be loaded is never registered."""
    import skops.io

    from mlplatform.training import trusted_model_types

    allowed = trusted_model_types()
    outside = sorted(set(skops.io.get_untrusted_types(data=skops.io.dumps(model))) - set(allowed))
    if outside:
        raise UntrustedModel(f"refusing to register a {type(model).__name__} holding types outside the platform's "
                             f"allowlist (training.SKOPS_TRUSTED_TYPES): {outside}")
    return allowed


def _runtime_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "scikit-learn", "skops", "pandas", "numpy")]


def trainings_view(created_ms: int) -> str:
    """The saved view's tag value, in the envelope the MLflow 3 UI writes (its state a JSON string)."""
    import json

    always_shown = ["runDateAndNestInfo", "duration", "attributes.`Dataset`"]  # after ours, the dataset narrower
    state = {"selectedColumns": list(TRAININGS_VIEW_COLUMNS),
             "columnOrder": ["attributes.`Run Name`", *TRAININGS_VIEW_COLUMNS, *always_shown],
             "columnWidths": {**{column: 130 for column in TRAININGS_VIEW_METRICS}, "attributes.`Dataset`": 200}}
    return json.dumps({"name": "Trainings: holdout metrics", "createdAt": created_ms, "updatedAt": created_ms,
                       "state": json.dumps(state)})


def _tagged(experiment, tags: dict[str, str]):
    """The experiment, carrying ``tags`` (those already there are not written again)."""
    import mlflow

    mlc = mlflow.MlflowClient()
    for key, value in tags.items():
        if experiment.tags.get(key) != value:
            mlc.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment


def training_experiment(name: str):
    """The model's training experiment, created if need be and made current: of the model-training kind,
    with the trainings view."""
    import mlflow

    experiment = mlflow.set_experiment(name)
    return _tagged(experiment, {EXPERIMENT_KIND_TAG: MODEL_TRAINING,
                                TRAININGS_VIEW_TAG: trainings_view(experiment.creation_time or 0)})


def monitoring_experiment(model: str):
    """The model's monitoring experiment, created if need be and made current, of the model-training kind."""
    import mlflow

    return _tagged(mlflow.set_experiment(f"{model}-monitoring"), {EXPERIMENT_KIND_TAG: MODEL_TRAINING})


def _log_candidates(candidates: list, tags: dict) -> None:
    """One child run per searched candidate, so the MLflow UI compares them side by side under the parent."""
    import mlflow

    from mlplatform.training import logged_params

    for rank, candidate in enumerate(candidates, start=1):
        if not candidate.fold_auc:
            continue
        with mlflow.start_run(run_name=f"{rank:02d}-{candidate.family}", nested=True):
            mlflow.set_tags({**tags, "search_rank": str(rank), "family": candidate.family})
            mlflow.log_params(logged_params(candidate.family, candidate.params))
            mlflow.log_metrics({CV_AUC: candidate.mean_auc,
                                **{f"{CV_AUC}_fold_{i}": auc for i, auc in enumerate(candidate.fold_auc)}})


def log_training_run(cfg: ModelConfig, model, train_frame: "pd.DataFrame", features: "pd.DataFrame",
                     metrics: dict, params: dict, tags: dict, dataset_info: dict, extra_json: dict,
                     candidates: list = ()) -> tuple[str, str]:
    """Log the training (parent) run with its search candidates (child runs) and register the
    chosen model; return (run_id, version)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    trusted = trusted_types(model)  # before anything is logged: never register what could not be loaded
    training_experiment(cfg.name)
    with mlflow.start_run(run_name=f"train-{tags.get('cutoff_ds', '')}") as run:
        mlflow.set_tags({**tags, "mlflow.source.git.commit": code_version(), "code_version": code_version()})
        mlflow.log_params(params)
        mlflow.log_metrics({HOLDOUT_METRICS[k]: v for k, v in metrics.items()})
        if candidates and candidates[0].fold_auc:
            mlflow.log_metric(BEST_CV_AUC, candidates[0].mean_auc)
        _log_candidates(list(candidates), tags)
        dataset = mlflow.data.from_pandas(train_frame, name=f"{cfg.name}-training", digest=dataset_info["version"],
                                          targets=cfg.target.name)
        mlflow.log_input(dataset, context="training", tags={"version": dataset_info["version"]})
        for name, obj in extra_json.items():
            mlflow.log_dict(obj, name)
        example = features.head(5)
        pause_point("training.before_model")  # the run is RUNNING and tagged, nothing is registered yet
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=trusted,
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

    experiment = monitoring_experiment(model)
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
