"""The demo's summary tells the truth: a run whose decisive task skipped is counted as skipped, although Airflow
marks the run a success, and the newest report is named by its lake path and its URL on the reports page."""

from __future__ import annotations

from collections import Counter

from mlplatform.devstack.demo import DECISIVE_TASKS, report_lines, run_outcomes, runs_line
from mlplatform.lake import Lake


def dag_run(run_id: str, state: str) -> dict:
    """A record of GET /api/v2/dags/{dag_id}/dagRuns (the fields the summary reads, and a few beside them)."""
    return {"dag_run_id": run_id, "dag_id": "flight_delay__score", "state": state, "run_type": "asset_triggered",
            "logical_date": None, "run_after": "2013-02-01T00:05:00Z", "conf": {}}


def task_instance(run_id: str, task_id: str, state: str | None) -> dict:
    """A record of GET /api/v2/dags/{dag_id}/dagRuns/~/taskInstances."""
    return {"id": f"0199-{run_id}-{task_id}", "task_id": task_id, "dag_id": "flight_delay__score",
            "dag_run_id": run_id, "map_index": -1, "state": state, "try_number": 1,
            "operator": "_PythonDecoratedOperator"}


def test_score_runs_without_a_champion_count_as_skipped_not_success():
    runs = [dag_run(f"asset_triggered__{i}", "success") for i in range(37)] + [dag_run("asset_triggered__x", "failed")]
    tis = [task_instance(f"asset_triggered__{i}", "score_days", "skipped" if i < 30 else "success") for i in range(37)]
    tis.append(task_instance("asset_triggered__x", "score_days", "failed"))

    outcomes = run_outcomes(runs, tis, DECISIVE_TASKS["score"])

    assert outcomes == Counter({"skipped": 30, "success": 7, "failed": 1})
    assert runs_line("score", outcomes) == "  score    runs: 7 success, 30 skipped, 1 failed"


def test_only_the_decisive_task_decides_a_skip():
    """The monitor's branches skip on every run; its runs still did their work."""
    runs = [dag_run("r1", "success"), dag_run("r2", "running")]
    tis = [task_instance("r1", task, state) for task, state in (
        ("drift_reports", "success"), ("decide", "success"), ("request_retrain", "skipped"),
        ("alert_only", "skipped"), ("nothing_to_do", "success"))]
    tis.append(task_instance("r2", "drift_reports", None))

    outcomes = run_outcomes(runs, tis, DECISIVE_TASKS["monitor"])

    assert outcomes == Counter({"success": 1, "running": 1})
    assert runs_line("monitor", outcomes) == "  monitor  runs: 1 success, 1 running"
    assert runs_line("train", Counter()) == "  train    runs: none"


def test_the_newest_report_is_named_in_the_lake_and_on_the_reports_page(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_AIRFLOW_URL", "http://127.0.0.1:8123")
    lake = Lake((tmp_path / "lake").as_uri())
    assert report_lines(lake, "flight_delay") == ["  drift reports: none yet"]
    for ds in ("2013-02-01", "2013-02-02"):
        lake.write_bytes(f"reports/flight_delay/ds={ds}/drift_report.html", b"<html></html>")
    # A later day holding only a summary (its report not written yet) is not the newest report.
    lake.write_json("reports/flight_delay/ds=2013-02-03/summary.json", {"ds": "2013-02-03"})

    lines = report_lines(lake, "flight_delay")

    assert lines[0] == "  drift reports: 2 days; the latest (2013-02-02):"
    assert lines[1].endswith(f"{tmp_path}/lake/reports/flight_delay/ds=2013-02-02/drift_report.html")
    assert lines[2].endswith("http://127.0.0.1:8123/model-reports/flight_delay/2013-02-02/drift_report.html")
