"""The Model reports page follows the model files: a new, changed or removed model shows at once, and a
broken file becomes a notice while the other models still render."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import yaml

from mlplatform.lake import Lake
from tests.conftest import REPO
from tests.unit.test_reports_page import unreachable_uri, write_day

GOOD = yaml.safe_load((REPO / "include/models/flight_delay.yaml").read_text())
NEW_MODEL = "flight_delay_jfk"
REPORT = f"/{NEW_MODEL}/2013-03-01/drift_report.html"


@pytest.fixture
def models_dir(tmp_path):
    directory = tmp_path / "models"
    directory.mkdir()
    shutil.copy(REPO / "include/models/flight_delay.yaml", directory / "flight_delay.yaml")
    return directory


@pytest.fixture
def client(tmp_path, models_dir, monkeypatch):
    """The plugin's app as the api-server mounts it: one process for the whole test, Airflow's auth replaced."""
    from fastapi.testclient import TestClient

    lake = Lake((tmp_path / "lake").as_uri())
    write_day(lake, NEW_MODEL, "2013-03-01", 0, "1", labelled=False)
    monkeypatch.setenv("MLOPS_LAKE_URI", lake.root_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", unreachable_uri())
    monkeypatch.setenv("MLOPS_MODELS_DIR", str(models_dir))
    spec = importlib.util.spec_from_file_location("mlplatform_plugin_config_test", REPO / "plugins" / "mlplatform_plugin.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    plugin.app.dependency_overrides[plugin.require_viewer] = lambda: None
    with TestClient(plugin.app) as test_client:
        yield test_client


def listed_models(client) -> str:
    page = client.get("/")
    assert page.status_code == 200
    return page.text


def test_a_new_changed_or_removed_model_file_shows_without_a_restart(client, models_dir):
    assert 'data-model="flight_delay"' in listed_models(client)
    assert f'data-model="{NEW_MODEL}"' not in listed_models(client)
    assert client.get(REPORT).status_code == 404

    new_file = models_dir / f"{NEW_MODEL}.yaml"
    new_file.write_text(yaml.safe_dump({**GOOD, "name": NEW_MODEL, "description": "JFK only"}))
    page = listed_models(client)
    assert f'data-model="{NEW_MODEL}"' in page and "JFK only" in page
    assert f'href="{NEW_MODEL}/2013-03-01/drift_report.html"' in page
    report = client.get(REPORT)
    assert report.status_code == 200 and f"Drift report {NEW_MODEL} 2013-03-01" in report.text

    new_file.write_text(yaml.safe_dump({**GOOD, "name": NEW_MODEL, "description": "JFK, renamed"}))
    assert "JFK, renamed" in listed_models(client)

    new_file.unlink()
    assert f'data-model="{NEW_MODEL}"' not in listed_models(client)
    assert client.get(REPORT).status_code == 404


def test_a_broken_model_file_is_a_notice_and_the_other_models_render(client, models_dir):
    raw = {**GOOD, "name": NEW_MODEL, "training": {**GOOD["training"], "window_days": "abc"}}
    broken = models_dir / f"{NEW_MODEL}.yaml"
    broken.write_text(yaml.safe_dump(raw))
    (models_dir / "draft.yaml").write_text("")

    page = listed_models(client)
    assert 'data-model="flight_delay"' in page and f'data-model="{NEW_MODEL}"' not in page
    assert page.count('class="model config-error"') == 2
    assert f'data-config-file="{broken}"' in page
    assert f"{broken}: training.window_days: must be a positive integer (got &#39;abc&#39;)" in page
    assert f"{models_dir / 'draft.yaml'}: the file is empty" in page
    assert client.get(REPORT).status_code == 404
