"""Fault injection against the real local servers (the session's warehouse emulator, MLflow server, Airflow
metadata DB and S3 server, from tests/conftest.py). One model, FAULT_MODEL, is trained once for the whole
package; each fault is injected at a named pause point (mlplatform.faults) or by stopping a server, then the
work is re-run and its outputs are counted against the source. Each fault adds one line to the session's
summary (FAULT <name> injected=... survived=... rows_lost=... duplicates=...)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import REPO
from tests.faults.harness import FAULT_MODEL, RESULTS, data_file_hashes

HISTORY = ["2013-03-01", "2013-03-02", "2013-03-03", "2013-03-04"]
CUTOFF = "2013-03-05"  # the shared champion's training cut-off: labels up to it, features before it
# flight_delay's definition with a training small enough for a fault suite: 2 training days, 2 holdout days
# and a lighter booster. The faults do not depend on the model's quality.
SMALL_TRAINING = {"holdout_days": 2, "min_training_rows": 1000, "params": {"max_iter": 30, "learning_rate": 0.1,
                                                                           "max_leaf_nodes": 15}}


def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.section("fault injection")
        for result in RESULTS:
            terminalreporter.write_line(result.line())


def model_file(directory, name: str) -> None:
    import yaml

    raw = yaml.safe_load((REPO / "include" / "models" / "flight_delay.yaml").read_text())
    raw["name"] = name
    raw["training"].update(SMALL_TRAINING)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(raw))


@pytest.fixture(scope="package")
def models_dir(local_servers, tmp_path_factory):
    """MLOPS_MODELS_DIR holding FAULT_MODEL only, for this package's tests."""
    directory = tmp_path_factory.mktemp("fault_models")
    model_file(directory, FAULT_MODEL)
    previous = os.environ.get("MLOPS_MODELS_DIR")
    os.environ["MLOPS_MODELS_DIR"] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop("MLOPS_MODELS_DIR")
    else:
        os.environ["MLOPS_MODELS_DIR"] = previous


class ReferenceRuns:
    """Uninterrupted runs of a job, each in a lake of its own: the bytes a faulted run must end up with."""

    def __init__(self, root):
        self.root, self._hashes = root, {}

    def hashes(self, area: str, ds: str, job) -> dict[str, str]:
        from mlplatform.lake import Lake

        if (area, ds) not in self._hashes:
            lake_uri = (self.root / f"{area}-{ds}").as_uri()
            previous = os.environ["MLOPS_LAKE_URI"]
            os.environ["MLOPS_LAKE_URI"] = lake_uri
            try:
                job()
            finally:
                os.environ["MLOPS_LAKE_URI"] = previous
            self._hashes[area, ds] = data_file_hashes(Lake(lake_uri), area, FAULT_MODEL, ds)
        return self._hashes[area, ds]

    def ingest(self, ds: str, areas=("datasets", "labels")) -> dict[str, dict[str, str]]:
        """The feature and label partitions' data files of an uninterrupted ingest of ``ds``."""
        from mlplatform import ingest

        jobs = {"datasets": ingest.ingest_features, "labels": ingest.ingest_labels}
        return {area: self.hashes(area, ds, lambda: jobs[area](FAULT_MODEL, ds)) for area in areas}


@pytest.fixture(scope="package")
def reference(models_dir, tmp_path_factory) -> ReferenceRuns:
    return ReferenceRuns(tmp_path_factory.mktemp("reference-lakes"))


@pytest.fixture(scope="package")
def champion(models_dir):
    """FAULT_MODEL's history ingested and one version trained (uninterrupted) and promoted to champion;
    returns the training's outcome."""
    from mlplatform import ingest, promotion, training

    for ds in HISTORY:
        ingest.ingest_features(FAULT_MODEL, ds)
    for ds in [*HISTORY, CUTOFF]:
        ingest.ingest_labels(FAULT_MODEL, ds)
    outcome = training.train_challenger(FAULT_MODEL, CUTOFF, "initial", search_budget=0,
                                        airflow_run=f"{FAULT_MODEL}__train/uninterrupted")
    promotion.promote(FAULT_MODEL, outcome, force=True, actor="tests/faults")
    return outcome
