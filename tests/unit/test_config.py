import json
import os
import shutil
import subprocess
import sys
from copy import deepcopy
from datetime import date

import pytest
import yaml

from mlplatform.config import (ModelConfigError, config_errors, load_model_config, load_models, model_config,
                               model_configs)
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


# -- the strict schema: every class of mistake names the file and the key path ------------------------------
GOOD = yaml.safe_load((REPO / "include/models/flight_delay.yaml").read_text())
DELETE = object()


def with_change(key: str, value) -> dict:
    """The shipped config with one dotted key (list items by index) set, or deleted with DELETE."""
    raw = deepcopy(GOOD)
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


def write_model(directory, raw, file_name: str = "model.yaml"):
    path = directory / file_name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def error_of(path) -> str:
    with pytest.raises(ModelConfigError) as info:
        load_model_config(path)
    return str(info.value)


@pytest.mark.parametrize("key, value, where, expected", [
    # wrong types and ranges
    ("training.window_days", "abc", "training.window_days", "must be a positive integer (got 'abc')"),
    ("training.window_days", -5, "training.window_days", "must be a positive integer (got -5)"),
    ("training.min_training_rows", 2000.5, "training.min_training_rows", "positive integer"),
    ("labels.delay_days", -1, "labels.delay_days", "integer >= 0"),
    ("thresholds.decision_threshold", 7, "thresholds.decision_threshold", "probability between 0 and 1"),
    ("drift_policy.share", 0, "drift_policy.share", "a share in (0, 1]"),
    ("features.1.drift", "yes", "features[1].drift", "true or false (got 'yes')"),
    ("training.holdout_days", 60, "training.holdout_days", "smaller than training.window_days (60)"),
    ("drift_policy.drifted_days", 9, "drift_policy.drifted_days", "at most drift_policy.window_days (5)"),
    ("source.contract.rows.min", 6000, "source.contract.rows.max", "at least rows.min (6000)"),
    # dates
    ("schedule.start_date", "not a date", "schedule.start_date", "must be a date written YYYY-MM-DD"),
    ("schedule.start_date", "2013-02-30", "schedule.start_date", "'2013-02-30'"),
    ("schedule.end_date", date(2012, 12, 31), "schedule.end_date", "before schedule.start_date 2013-01-01"),
    # enumerations, cron, identifiers
    ("target.operator", "rm -rf", "target.operator", "one of '>', '>=', '<', '<=', '==' (got 'rm -rf')"),
    ("features.4.transform", "sqrt", "features[4].transform", "'hhmm_to_hours'"),
    ("features.0.kind", "text", "features[0].kind", "one of 'numeric', 'categorical'"),
    ("training.family", "xgboost", "training.family", "'hist_gradient_boosting'"),
    ("source.contract.columns.DISTANCE.dtype", "double", "source.contract.columns.DISTANCE.dtype", "'timestamp'"),
    ("schedule.ingest", "every day at noon", "schedule.ingest", "cron expression"),
    ("schedule.ingest", "61 25 * * *", "schedule.ingest", "cron expression"),
    ("name", "../../etc", "name", "lower-case letters, digits and underscores"),
    ("name", "Flight-Delay", "name", "(got 'Flight-Delay')"),
    ("name", "flight_delay\n", "name", "(got 'flight_delay\\n')"),
    ("source.table", "FLIGHTS.RAW.T; DROP TABLE X", "source.table", "plain SQL identifier"),
    ("source.contract.columns.DISTANCE; --", {"dtype": "float"}, "source.contract.columns.DISTANCE; --",
     "plain SQL column name"),
    # references to declared columns
    ("gate.segments", ["CARRIER", "TAIL"], "gate.segments[1]", "'TAIL' is not a column of source.contract"),
    ("features.3.column", "NOPE", "features[3].column", "'NOPE' is not a column of source.contract or of "
                                                         "context.contract (as ORIGIN_WX_<column>)"),
    ("entity_columns", ["FLIGHT_ID", "GATE"], "entity_columns[1]", "'GATE' is not a column"),
    ("target.column", "DEP_DELAY", "target.column", "not a column of labels.contract"),
    ("source.event_time", "DEPARTURE", "source.event_time", "not a column of source.contract"),
    ("source.contract.partition_column", "CARRIER", "source.contract.partition_column", "with dtype date"),
    # unknown and missing keys
    ("training.search.budjet", 3, "training.search.budjet", "unknown key (did you mean 'budget'?)"),
    ("features.4.transfrom", "identity", "features[4].transfrom", "unknown key (did you mean 'transform'?)"),
    ("labels", DELETE, "labels", "required key is missing"),
    ("training.holdout_days", DELETE, "training.holdout_days", "required key is missing"),
    ("source", None, "source", "must be a mapping (got None)"),
])
def test_each_mistake_names_the_file_and_key_path(tmp_path, key, value, where, expected):
    path = write_model(tmp_path, with_change(key, value))
    message = error_of(path)
    assert message.startswith(f"{path}: {where}: "), message
    assert expected in message


def test_a_misspelt_section_is_an_error_not_the_defaults(tmp_path):
    raw = deepcopy(GOOD)
    raw["gates"] = raw.pop("gate")
    path = write_model(tmp_path, raw)
    assert error_of(path) == f"{path}: gates: unknown key (did you mean 'gate'?)"


def test_every_problem_of_a_file_is_listed(tmp_path):
    raw = with_change("training.window_days", "abc")
    raw["thresholds"]["decision_threshold"] = 7
    lines = error_of(write_model(tmp_path, raw)).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["training.window_days", "thresholds.decision_threshold"]


def test_an_empty_file_names_the_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert error_of(path).startswith(f"{path}: the file is empty; a model file is a mapping with the keys name, ")


@pytest.mark.parametrize("text, expected", [("name: [flight\n", "not valid YAML"),
                                            ("- a\n- b\n", "must be a mapping of model settings (got list)")])
def test_a_file_that_is_not_a_mapping_names_the_file(tmp_path, text, expected):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    assert error_of(path).startswith(f"{path}: {expected}")


def test_a_file_inside_the_repository_is_named_from_its_root():
    assert str(ModelConfigError(REPO / "include/models/x.yaml", ["training.window_days: bad"])) == \
        "include/models/x.yaml: training.window_days: bad"


def test_partition_column_may_name_a_date_column(tmp_path):
    cfg = load_model_config(write_model(tmp_path, with_change("source.contract.partition_column", "FLIGHT_DATE")))
    assert cfg.source.contract.columns["FLIGHT_DATE"].dtype == "date"


def test_optional_sections_keep_the_runtime_defaults(tmp_path):
    from mlplatform.drift_policy import DriftPolicy
    from mlplatform.gates import GatePolicy

    raw = deepcopy(GOOD)
    del raw["gate"], raw["drift_policy"], raw["training"]["search"]
    cfg = load_model_config(write_model(tmp_path, raw))
    assert cfg.gate == GatePolicy() and cfg.drift_policy == DriftPolicy()
    assert cfg.training.search.budget == 6 and cfg.training.search.families == {}


# -- isolation: a broken file affects only its own model ------------------------------------------------------
@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    directory = tmp_path / "models"
    directory.mkdir()
    shutil.copy(REPO / "include/models/flight_delay.yaml", directory / "flight_delay.yaml")
    monkeypatch.setenv("MLOPS_MODELS_DIR", str(directory))
    return directory


def test_a_broken_file_leaves_the_other_models_loadable(models_dir):
    broken = write_model(models_dir, {**with_change("training.window_days", "abc"), "name": "broken_model"},
                         "broken.yaml")
    assert [c.name for c in model_configs()] == ["flight_delay"]
    assert model_config("flight_delay").name == "flight_delay"
    (error,) = config_errors()
    assert error.path == broken and error.model == "broken_model"
    with pytest.raises(ModelConfigError, match=r"broken\.yaml: training\.window_days: must be a positive integer"):
        model_config("broken_model")


def test_an_empty_file_is_named_after_its_file(models_dir):
    (models_dir / "draft.yaml").write_text("")
    assert [c.name for c in model_configs()] == ["flight_delay"]
    with pytest.raises(ModelConfigError, match=r"draft\.yaml: the file is empty"):
        model_config("draft")


def test_a_duplicate_name_is_an_error_of_the_file_not_named_after_it(models_dir):
    write_model(models_dir, GOOD, "a_copy.yaml")  # sorts before flight_delay.yaml
    assert [c.name for c in model_configs()] == ["flight_delay"]
    (error,) = config_errors()
    assert str(error) == f"{models_dir / 'a_copy.yaml'}: name: model name 'flight_delay' is already defined in " \
                         f"{models_dir / 'flight_delay.yaml'}"


def test_loading_follows_the_files(models_dir):
    assert [c.name for c in model_configs()] == ["flight_delay"]
    extra = write_model(models_dir, {**GOOD, "name": "flight_delay_jfk"}, "flight_delay_jfk.yaml")
    assert [c.name for c in model_configs()] == ["flight_delay", "flight_delay_jfk"]
    write_model(models_dir, {**with_change("training.window_days", 61), "name": "flight_delay_jfk"},
                "flight_delay_jfk.yaml")  # same size: only the content tells
    assert model_config("flight_delay_jfk").training.window_days == 61
    extra.unlink()
    assert [c.name for c in model_configs()] == ["flight_delay"]
    assert load_models() is load_models(), "unchanged files are not parsed again"


# -- python -m mlplatform.config check ------------------------------------------------------------------------------
def run_check(*args) -> subprocess.CompletedProcess:
    probe = ("import runpy, sys; sys.argv = ['mlplatform.config', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('mlplatform.config', run_name='__main__')\n"
             "finally:\n    print('AIRFLOW_IMPORTED', any(m.split('.')[0] == 'airflow' for m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    return subprocess.run([sys.executable, "-c", probe, "check", *map(str, args)], capture_output=True, text=True,
                          env=env)


def test_check_command_reports_each_error_and_exits_1(tmp_path):
    broken = write_model(tmp_path, with_change("training.window_days", "abc"), "broken.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = run_check(REPO / "include/models/flight_delay.yaml", broken, empty)
    assert result.returncode == 1, result.stderr
    assert f"{broken}: training.window_days: must be a positive integer (got 'abc')" in result.stdout.splitlines()
    assert f"{empty}: the file is empty" in result.stdout
    assert "flight_delay.yaml" not in result.stdout
    assert "AIRFLOW_IMPORTED False" in result.stdout


def test_check_command_passes_the_shipped_models():
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 model file(s) checked, 0 with errors" in result.stderr
    assert "AIRFLOW_IMPORTED False" in result.stdout
