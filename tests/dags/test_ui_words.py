"""The README's instructions name what the Airflow UI shows: every form field it names is a Param title of the DAG
it is about, and every button or option is a label of the installed Airflow UI (its English strings)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
# What the README tells a user to set in a trigger form, per DAG.
FORM_FIELDS = {"flight_delay__train": ["Cut-off day", "Training window (days)", "Search budget", "Force promotion",
                                       "Reason"],
               "flight_delay__rollback": ["Version", "Reason"]}
# The UI labels the README's instructions name, and where the UI's English strings hold them.
UI_LABELS = {"Trigger": ("components", "triggerDag.button"), "Single Run": ("components", "triggerDag.selectLabel"),
             "Backfill": ("components", "backfill.selectLabel"), "Date Range": ("components", "backfill.dateRange"),
             "Reprocess Behavior": ("components", "backfill.reprocessBehavior"),
             "Missing and Errored Runs": ("components", "backfill.missingAndErroredRuns"),
             "Run Backfill": ("components", "backfill.run")}


def ui_string(bundle: str, key: str) -> str:
    package = Path(importlib.util.find_spec("airflow").submodule_search_locations[0])
    strings = json.loads((package / "ui/dist/i18n/locales/en" / f"{bundle}.json").read_text())
    for part in key.split("."):
        strings = strings[part]
    return strings


def bold_in_readme(words: str) -> bool:
    return re.search(rf"\*\*{re.escape(words)}\*\*", README) is not None


@pytest.mark.parametrize("label, where", UI_LABELS.items())
def test_the_readme_names_ui_labels_as_the_ui_shows_them(label, where):
    assert ui_string(*where) == label
    assert bold_in_readme(label), label


def test_clear_task_instance_is_the_ui_button():
    task_instance = ui_string("common", "taskInstance_one")
    clear = ui_string("dags", "runAndTaskActions.clear.button").replace("{{type}}", task_instance)
    assert clear == "Clear Task Instance" and bold_in_readme(clear)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


@pytest.mark.parametrize("dag_id, fields", FORM_FIELDS.items())
def test_the_readme_names_form_fields_by_their_titles(dagbag, dag_id, fields):
    params = dagbag.dags[dag_id].params
    titles = {params.get_param(name).schema.get("title") for name in params.keys()}
    for field in fields:
        assert field in titles, (dag_id, field, titles)
        assert bold_in_readme(field), field
    assert f"`{dag_id.replace('flight_delay', '<model>')}`" in README
