"""What enters the DAGs is checked: model files (a broken one is isolated and shown as one import error)
and days (the ``ds``/``cutoff_ds`` trigger-form params)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import REPO

STAGES = ("ingest", "train", "score", "monitor", "rollback")


def test_a_broken_model_file_is_one_import_error_and_the_other_models_load(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    shutil.copy(REPO / "include/models/flight_delay.yaml", tmp_path / "flight_delay.yaml")
    raw = yaml.safe_load((REPO / "include/models/flight_delay.yaml").read_text())
    raw["name"], raw["training"]["window_days"] = "flight_delay_copy", "abc"
    broken = tmp_path / "flight_delay_copy.yaml"
    broken.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLOPS_MODELS_DIR", str(tmp_path))

    bag = DagBag(str(REPO / "dags"))

    assert sorted(bag.dag_ids) == sorted(f"flight_delay__{stage}" for stage in STAGES)
    assert len(bag.import_errors) == 1, bag.import_errors
    (dag_file, message), = bag.import_errors.items()
    assert dag_file.endswith("model_config_errors.py")
    assert f"{broken}: training.window_days: must be a positive integer (got 'abc')" in message


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


@pytest.mark.parametrize("dag_id, param", [("flight_delay__score", "ds"), ("flight_delay__monitor", "ds"),
                                           ("flight_delay__train", "cutoff_ds")])
@pytest.mark.parametrize("value", ["2013-02-05/../../../../outside/written", "2013-02-30", "2013-2-5", "../x",
                                   "2013-02-05 ", 20130205])
def test_day_params_refuse_anything_but_a_day(dagbag, dag_id, param, value):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dagbag.dags[dag_id].params.get_param(param).resolve(value)


@pytest.mark.parametrize("dag_id, param", [("flight_delay__score", "ds"), ("flight_delay__monitor", "ds"),
                                           ("flight_delay__train", "cutoff_ds")])
def test_day_params_take_a_day_or_nothing(dagbag, dag_id, param):
    day_param = dagbag.dags[dag_id].params.get_param(param)
    assert day_param.resolve("2013-02-05") == "2013-02-05"
    assert day_param.resolve(None) is None
    assert day_param.schema["format"] == "date"



@pytest.mark.parametrize("days, help_text", [
    (["2013-01-03", "2013-01-04", "2013-01-05"],
     "It must be a labelled day: labelled days in the lake: 2013-01-03 .. 2013-01-05"),
    ([], "It must be a labelled day: no labelled days yet")])
def test_the_cutoff_param_names_the_lakes_labelled_days(tmp_path, monkeypatch, days, help_text):
    """The trigger form's help for the cut-off, built when the DAG file is parsed, states the labelled days;
    an empty lake parses as well."""
    import pandas as pd
    from airflow.dag_processing.dagbag import DagBag

    from mlplatform.lake import Lake

    lake = Lake((tmp_path / "lake").as_uri())
    for day in days:
        lake.commit_partition("labels", "flight_delay", day, pd.DataFrame({"FLIGHT_ID": [1], "ARR_DELAY": [3.0]}), {})
    monkeypatch.setenv("MLOPS_LAKE_URI", lake.root_uri)

    bag = DagBag(str(REPO / "dags"))

    assert bag.import_errors == {}
    cutoff = bag.dags["flight_delay__train"].params.get_param("cutoff_ds")
    assert cutoff.schema["title"] == "Cut-off day"
    assert help_text in cutoff.description
