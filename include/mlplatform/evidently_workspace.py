"""The daily monitoring reports as an Evidently workspace, so that ``make reports-ui`` (``evidently ui``)
shows each model's history as a dashboard: the second view, for users who already know Evidently,
next to the platform's own reports page.

The lake is the source of truth; the workspace is a local cache built from it. The monitor tasks
write each day's Evidently run to the lake (``run_document``, next to the day's HTML report), and
``python -m mlplatform.evidently_workspace sync`` (run by ``make reports-ui``) copies the runs into
Evidently's file workspace at ``workspace_path()``. Tasks therefore never write a worker's local
disk, and the workspace can be deleted and rebuilt at any time.

One project per model, found (or created) by name. ``add_run`` stores a day's Report run under an id
derived from (model, ds, kind), so adding a day again replaces its earlier run instead of adding one,
and with the day as the run's timestamp, so the dashboard's time axis is the data day, not the time
the task ran. Writes take a lock on the workspace, so two syncs neither create a project twice nor
lose a dashboard panel.

Files are written through Evidently's file-workspace storage (``evidently.ui.storage.local.base.
LocalState``: what ``evidently.ui.workspace.Workspace`` itself uses for projects, runs and dashboards),
not through ``Workspace``, whose constructor parses every stored run (its dataset manager loads the
whole workspace). ``Workspace(path)`` reads what this writes.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from mlplatform.config import settings

if TYPE_CHECKING:
    from evidently.core.report import Snapshot, SnapshotModel
    from evidently.sdk.models import DashboardPanelPlot

    from mlplatform.lake import Lake

log = logging.getLogger(__name__)

DRIFT, PERFORMANCE = "drift", "performance"
KINDS = (DRIFT, PERFORMANCE)
# The day's Evidently run of each kind, in the lake next to the day's reports (reports/<model>/ds=<day>/).
RUN_FILES = {DRIFT: "evidently_drift_run.json", PERFORMANCE: "evidently_performance_run.json"}
TAB = "Monitoring"
# Fixed namespace: the same model, day and kind always map to the same project and run ids.
_NAMESPACE = uuid.UUID("6f1c1b0e-3b4e-5c8a-9d2f-7a4e2b1c9d30")
_LOCK_FILE = ".mlplatform.lock"


def workspace_path() -> Path:
    """MLOPS_EVIDENTLY_WORKSPACE, else <data dir>/evidently."""
    configured = os.environ.get("MLOPS_EVIDENTLY_WORKSPACE")
    return Path(configured) if configured else settings().data_dir / "evidently"


def run_document(snapshot: "Snapshot") -> bytes:
    """A Report run as the JSON Evidently's workspace stores, for the lake."""
    from evidently.legacy.utils import NumpyEncoder

    return json.dumps(snapshot.to_snapshot_model().dict(), cls=NumpyEncoder).encode()


def parse_run(document: bytes) -> "SnapshotModel":
    from evidently.core.report import SnapshotModel
    from evidently._pydantic_compat import parse_obj_as  # what LocalState.read_snapshot uses

    return parse_obj_as(SnapshotModel, json.loads(document))


def run_id(model: str, ds: str, kind: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"run/{model}/{ds}/{kind}")


def _panel_id(model: str, title: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"panel/{model}/{title}")


def dashboard_panels(model: str) -> list["DashboardPanelPlot"]:
    """The project's dashboard: drifted columns (share and count), the score's drift, the realized ROC AUC
    once labels arrived, and the rows of each day. Series are filtered by the runs' kind tag."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import bar_plot_panel, line_plot_panel

    from mlplatform.evidently_reports import PREDICTION_COLUMN

    panels = [
        line_plot_panel("Share of drifted columns", size="half", values=[
            PanelMetric(legend="share", metric="DriftedColumnsCount", metric_labels={"value_type": "share"},
                        tags=[DRIFT])]),
        bar_plot_panel("Drifted columns", size="half", values=[
            PanelMetric(legend="count", metric="DriftedColumnsCount", metric_labels={"value_type": "count"},
                        tags=[DRIFT])]),
        line_plot_panel(f"Drift of the {PREDICTION_COLUMN}", size="half", description=(
            "Evidently's drift score of the model's score: normed Wasserstein distance (drift at 0.1 or more) "
            "when the reference has more than 1000 rows, else the K-S p-value (drift below 0.05)"), values=[
            PanelMetric(legend=PREDICTION_COLUMN, metric="ValueDrift", metric_labels={"column": PREDICTION_COLUMN},
                        tags=[DRIFT])]),
        line_plot_panel("Realized ROC AUC", size="half",
                        description="Of each day once its labels arrived (empty until then)", values=[
            PanelMetric(legend="ROC AUC", metric="RocAuc", tags=[PERFORMANCE])]),
        bar_plot_panel("Rows", size="full", description=(
            "Rows of the day the drift report analysed: all of them up to the report's row cap, a sample "
            "above it (the run's metadata has the day's full count, current_rows)"), values=[
            PanelMetric(legend="rows", metric="RowCount", tags=[DRIFT])]),
    ]
    return [panel.copy(update={"id": _panel_id(model, panel.title)}) for panel in panels]


class EvidentlyWorkspace:
    """A local Evidently workspace directory (default ``workspace_path()``), one project per model."""

    def __init__(self, path: Path | str | None = None):
        from evidently.ui.storage.local.base import LocalState

        self.path = Path(path) if path is not None else workspace_path()
        self.path.mkdir(parents=True, exist_ok=True)
        self.state = LocalState(str(self.path))
        self._projects: dict[str, uuid.UUID] = {}  # found or created once per instance, not once per run

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / _LOCK_FILE, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def find_project(self, model: str) -> uuid.UUID | None:
        ids = sorted(self.state.list_projects(), key=str)
        return next((pid for pid in ids if self.state.read_project(pid).name == model), None)

    def project_id(self, model: str) -> uuid.UUID:
        """The model's project, found by name or created, with its dashboard panels (each added once)."""
        from evidently.sdk.models import DashboardTabModel, ProjectModel

        if model in self._projects:
            return self._projects[model]
        with self._locked():
            pid = self.find_project(model)
            if pid is None:
                pid = self.state.write_project(ProjectModel(
                    id=uuid.uuid5(_NAMESPACE, f"project/{model}"), name=model,
                    description=f"Daily drift and realized performance of {model} (mlplatform monitor runs)")).id
            dashboard = self.state.read_dashboard(pid)
            present = {p.id for p in dashboard.panels}
            missing = [p for p in dashboard_panels(model) if p.id not in present]
            if missing:  # edited as a whole: Workspace.dashboard.add_panel lists a panel twice in an existing tab
                tab = next((t for t in dashboard.tabs if t.title == TAB), None)
                if tab is None:
                    tab = DashboardTabModel(id=uuid.uuid5(_NAMESPACE, f"tab/{model}"), title=TAB, panels=[])
                    dashboard.tabs.append(tab)
                dashboard.panels.extend(missing)
                tab.panels.extend(p.id for p in missing)
                self.state.write_dashboard(pid, dashboard)
        self._projects[model] = pid
        return pid

    def add_snapshot(self, model: str, ds: str, snapshot: "Snapshot", kind: str = DRIFT) -> uuid.UUID:
        """``add_run`` for a Report run object."""
        return self.add_run(model, ds, snapshot.to_snapshot_model(), kind)

    def add_run(self, model: str, ds: str, run: "SnapshotModel", kind: str = DRIFT) -> uuid.UUID:
        """Store one day's Report run (``kind``: drift or performance) in the model's project, replacing
        that day's earlier run of the same kind; returns the run id."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        pid = self.project_id(model)
        dated = run.copy(update={
            "name": f"{model} {kind} {ds}",
            "timestamp": datetime.strptime(ds, "%Y-%m-%d"),
            "tags": sorted({*run.tags, kind}),
            "metadata": {**run.metadata, "model": model, "ds": ds, "kind": kind},
        })
        sid = run_id(model, ds, kind)
        with self._locked():
            # The same id overwrites in place, which `evidently ui` (watching the directory) reloads.
            self.state.write_snapshot(pid, sid, dated)
        return sid

    def runs(self, model: str) -> list[dict]:
        """The model's stored runs, oldest day first: id, ds, kind, timestamp and name."""
        pid = self.find_project(model)
        if pid is None:
            return []
        out = []
        for sid in self.state.list_snapshots(pid):
            run = self.state.read_snapshot(pid, sid)
            out.append({"id": sid, "ds": run.metadata.get("ds"), "kind": run.metadata.get("kind"),
                        "timestamp": run.timestamp, "name": run.name})
        return sorted(out, key=lambda r: (r["timestamp"], str(r["kind"])))


def sync_from_lake(lake: "Lake", model: str, reports_area: str, path: Path | str | None = None) -> int:
    """Add every run the monitor wrote under ``<reports_area>/<model>/`` to the workspace; returns how
    many. Re-running replaces each day's run with itself."""
    workspace = EvidentlyWorkspace(path)
    added = 0
    for name in lake.list_dir(f"{reports_area}/{model}"):
        if not name.startswith("ds="):
            continue
        ds = name.removeprefix("ds=")
        for kind, filename in RUN_FILES.items():
            relpath = f"{reports_area}/{model}/{name}/{filename}"
            if lake.exists(relpath):
                workspace.add_run(model, ds, parse_run(lake.read_bytes(relpath)), kind)
                added += 1
    return added


def main(argv: list[str] | None = None) -> None:
    from mlplatform.config import model_configs
    from mlplatform.lake import REPORTS_AREA
    from mlplatform.lake import default_lake as lake

    parser = argparse.ArgumentParser(prog="python -m mlplatform.evidently_workspace",
                                     description="Copy the monitor's Evidently runs from the lake to the local workspace.")
    parser.add_argument("command", choices=["sync"])
    parser.add_argument("--model", action="append", help="a model name (repeatable); default: every configured model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for model in args.model or [cfg.name for cfg in model_configs()]:
        added = sync_from_lake(lake(), model, REPORTS_AREA)
        log.info("%s: %d Evidently runs from %s in %s", model, added, lake().uri(f"{REPORTS_AREA}/{model}"),
                 workspace_path())


if __name__ == "__main__":
    main()
