import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from mlplatform.config import load_model_config, model_configs
from tests.conftest import REPO


def test_reference_model_config_loads():
    (cfg,) = model_configs(REPO / "include" / "models")
    assert cfg.name == "flight_delay"
    assert cfg.target.column == "ARR_DELAY" and cfg.target.threshold == 15


def test_outcome_columns_cannot_be_features(tmp_path):
    raw = yaml.safe_load((REPO / "include/models/flight_delay.yaml").read_text())
    raw["features"].append({"name": "arr_delay", "column": "ARR_DELAY", "kind": "numeric"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="never be features"):
        load_model_config(path)


def test_sql_injection_in_identifiers_is_refused(tmp_path):
    raw = yaml.safe_load((REPO / "include/models/flight_delay.yaml").read_text())
    raw["source"]["table"] = "FLIGHTS.RAW.T; DROP TABLE X"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="identifier"):
        load_model_config(path)


def test_second_model_file_yields_second_set_of_dags(tmp_path):
    """No new Python: copy the YAML under another name and the factories build its five DAGs."""
    shutil.copy(REPO / "include/models/flight_delay.yaml", tmp_path / "flight_delay.yaml")
    raw = yaml.safe_load((REPO / "include/models/flight_delay.yaml").read_text())
    raw["name"] = "flight_delay_jfk"
    (tmp_path / "flight_delay_jfk.yaml").write_text(yaml.safe_dump(raw))
    probe = (f"from airflow.dag_processing.dagbag import DagBag; b = DagBag({str(REPO / 'dags')!r}); "
             "assert not b.import_errors, b.import_errors; import json; print('IDS', json.dumps(sorted(b.dag_ids)))")
    env = {**os.environ, "MLOPS_MODELS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    ids = json.loads(next(line for line in out.splitlines() if line.startswith("IDS"))[4:])
    stages = ("ingest", "train", "score", "monitor", "rollback")
    assert ids == sorted(f"{model}__{stage}" for model in ("flight_delay", "flight_delay_jfk") for stage in stages)
