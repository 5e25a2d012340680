"""Daily Report runs in a local Evidently workspace: one project per model, one run per day and kind,
dated by the data day, with the dashboard's panels; and `evidently ui`'s app serving it."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from mlplatform import evidently_workspace as ew
from mlplatform.config import Feature, model_config
from mlplatform.evidently_reports import PREDICTION_COLUMN, drift_report, performance_report

MODEL = "flight_delay"
CFG = replace(model_config(MODEL), features=(Feature("x", "x", "numeric"), Feature("c", "c", "categorical")))
DAYS = ["2013-02-01", "2013-02-02", "2013-02-03"]
PANELS = {"Share of drifted columns", "Drifted columns", f"Drift of the {PREDICTION_COLUMN}", "Realized ROC AUC", "Rows"}


def frame(n: int, shift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(shift, 1, n), "c": rng.choice(list("abc"), n),
                         PREDICTION_COLUMN: rng.random(n), CFG.target.name: rng.integers(0, 2, n)})


@pytest.fixture(scope="module")
def snapshots():
    """Real small Evidently runs: three days of drift (growing shift), one day's performance."""
    reference = frame(1500, 0.0, seed=0)
    drift = {ds: drift_report(reference, frame(1200 + 100 * i, 0.4 * i, seed=i + 1), CFG).snapshot
             for i, ds in enumerate(DAYS)}
    performance = performance_report(reference, frame(600, 0.0, seed=9), CFG).snapshot
    return drift, performance


@pytest.fixture()
def workspace(tmp_path, snapshots):
    drift, performance = snapshots
    ws = ew.EvidentlyWorkspace(tmp_path / "evidently")
    for ds, snapshot in drift.items():
        ws.add_snapshot(MODEL, ds, snapshot)
    ws.add_snapshot(MODEL, DAYS[0], performance, kind=ew.PERFORMANCE)
    return ws


def evidently_workspace(ws: ew.EvidentlyWorkspace):
    """Evidently's own Workspace on the same directory: what it reads is what `evidently ui` shows."""
    from evidently.ui.workspace import Workspace

    return Workspace(str(ws.path))


def test_runs_are_listed_per_day_and_kind_dated_by_the_day(workspace):
    runs = workspace.runs(MODEL)
    assert [(r["ds"], r["kind"]) for r in runs] == [
        (DAYS[0], "drift"), (DAYS[0], "performance"), (DAYS[1], "drift"), (DAYS[2], "drift")]
    assert all(r["timestamp"] == datetime.fromisoformat(r["ds"]) for r in runs)
    evidently = evidently_workspace(workspace)
    (project,) = evidently.search_project(MODEL)
    assert len(evidently.list_runs(project.id)) == 4
    stored = evidently.get_run(project.id, ew.run_id(MODEL, DAYS[1], "drift"))
    assert stored.timestamp == datetime(2013, 2, 2) and "drift" in stored.tags
    assert stored.metadata["current_rows"] == "1300" and stored.metadata["ds"] == DAYS[1]


def test_re_adding_a_day_replaces_its_run(workspace, snapshots):
    drift, _ = snapshots
    before = {r["id"] for r in workspace.runs(MODEL)}
    workspace.add_snapshot(MODEL, DAYS[1], drift[DAYS[2]])  # a re-run of day 2 with other data
    ew.EvidentlyWorkspace(workspace.path).add_snapshot(MODEL, DAYS[1], drift[DAYS[2]])  # and again, by another writer
    assert {r["id"] for r in workspace.runs(MODEL)} == before
    evidently = evidently_workspace(workspace)
    (project,) = evidently.search_project(MODEL)
    assert len(evidently.list_runs(project.id)) == 4
    stored = evidently.get_run(project.id, ew.run_id(MODEL, DAYS[1], "drift"))
    assert stored.metadata["current_rows"] == "1400" and stored.timestamp == datetime(2013, 2, 2)


def test_the_workspace_defaults_to_the_data_dir(monkeypatch, tmp_path, snapshots):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    assert ew.workspace_path() == tmp_path.resolve() / "evidently"
    ew.EvidentlyWorkspace().add_snapshot(MODEL, DAYS[0], snapshots[0][DAYS[0]])
    assert [r["ds"] for r in ew.EvidentlyWorkspace(tmp_path / "evidently").runs(MODEL)] == [DAYS[0]]


def test_the_dashboard_has_its_panels_once(workspace):
    ew.EvidentlyWorkspace(workspace.path).project_id(MODEL)  # found again: nothing added twice
    (project,) = evidently_workspace(workspace).search_project(MODEL)
    dashboard = evidently_workspace(workspace).get_dashboard(project.id)
    assert {p.title for p in dashboard.panels} == PANELS and len(dashboard.panels) == len(PANELS)
    (tab,) = dashboard.tabs
    assert tab.title == ew.TAB and sorted(map(str, tab.panels)) == sorted(str(p.id) for p in dashboard.panels)
    series = {p.title: [(v.metric, v.tags, v.metric_labels) for v in p.values] for p in dashboard.panels}
    assert series["Realized ROC AUC"] == [("evidently:metric_v2:RocAuc", ["performance"], {})]
    assert series[f"Drift of the {PREDICTION_COLUMN}"] == [
        ("evidently:metric_v2:ValueDrift", ["drift"], {"column": PREDICTION_COLUMN})]


def test_the_workspace_is_rebuilt_from_the_runs_in_the_lake(tmp_path, snapshots):
    """The monitor writes each day's run to the lake; `make reports-ui` copies them into the workspace."""
    from mlplatform.lake import Lake

    drift, performance = snapshots
    lake = Lake((tmp_path / "lake").as_uri())
    for ds, snapshot in drift.items():
        lake.write_bytes(f"reports/{MODEL}/ds={ds}/{ew.RUN_FILES['drift']}", ew.run_document(snapshot))
    lake.write_bytes(f"reports/{MODEL}/ds={DAYS[0]}/{ew.RUN_FILES['performance']}", ew.run_document(performance))
    lake.write_json(f"reports/{MODEL}/ds=2013-02-04/summary.json", {})  # a day without runs is skipped

    assert ew.sync_from_lake(lake, MODEL, "reports", tmp_path / "ws") == 4
    assert ew.sync_from_lake(lake, MODEL, "reports", tmp_path / "ws") == 4  # again: replaced, not added
    synced = ew.EvidentlyWorkspace(tmp_path / "ws")
    assert [(r["ds"], r["kind"]) for r in synced.runs(MODEL)] == [
        (DAYS[0], "drift"), (DAYS[0], "performance"), (DAYS[1], "drift"), (DAYS[2], "drift")]
    (project,) = evidently_workspace(synced).search_project(MODEL)
    stored = evidently_workspace(synced).get_run(project.id, ew.run_id(MODEL, DAYS[2], "drift"))
    assert stored.metadata["current_rows"] == "1400"
    assert stored.metric_results.keys() == drift[DAYS[2]].to_snapshot_model().metric_results.keys()


def test_unknown_kind_is_refused(workspace, snapshots):
    with pytest.raises(ValueError, match="kind"):
        workspace.add_snapshot(MODEL, DAYS[0], snapshots[1], kind="quality")


def test_evidently_ui_serves_the_history(workspace, snapshots):
    """The app `evidently ui --workspace ...` runs (create_app(get_config(...))), over its HTTP API:
    the project, its runs by day, the dashboard's series, and a day added while it runs."""
    from evidently.ui.service.app import create_app, get_config
    from litestar.testing import TestClient

    drift, _ = snapshots
    with TestClient(create_app(get_config(workspace=str(workspace.path)))) as client:
        (project,) = [p for p in client.get("/api/projects").json() if p["name"] == MODEL]
        pid = project["id"]
        listed = client.get(f"/api/projects/{pid}/snapshots").json()
        assert sorted(s["timestamp"][:10] for s in listed) == sorted([*DAYS, DAYS[0]])
        assert {p["title"] for p in client.get(f"/api/v2/dashboards/{pid}").json()["panels"]} == PANELS

        def series(metric: str, tags: list[str], labels: dict) -> dict:
            body = {"series_filter": [{"tags": tags, "metadata": {}, "metric": f"evidently:metric_v2:{metric}",
                                       "metric_labels": labels}]}
            return client.post(f"/api/v2/snapshots/{pid}/data_series_batch", json=body).json()

        shares = series("DriftedColumnsCount", ["drift"], {"value_type": "share"})
        assert [s["timestamp"][:10] for s in shares["sources"]] == DAYS
        (values,) = [s["values"] for s in shares["series"]]
        assert len(values) == 3 and values[-1] > values[0]  # the shift grows day by day
        (auc,) = series("RocAuc", ["performance"], {})["series"]
        assert len(auc["values"]) == 1 and 0.0 <= auc["values"][0] <= 1.0

        ew.EvidentlyWorkspace(workspace.path).add_snapshot(MODEL, "2013-02-04", drift[DAYS[2]])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the app watches the workspace directory
            days = [s["timestamp"][:10] for s in series("DriftedColumnsCount", ["drift"], {"value_type": "share"})["sources"]]
            if "2013-02-04" in days:
                break
            time.sleep(0.5)
        assert days == [*DAYS, "2013-02-04"]
