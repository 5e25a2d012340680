"""The model-reports page: reading the lake's reports and promotion log, rendering, serving files."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
from datetime import date, timedelta
from pathlib import Path

import pytest

from mlplatform import reports_page
from mlplatform.config import model_config
from mlplatform.lake import (FEATURES_AREA, MANIFEST, PREDICTIONS_AREA, PROMOTIONS_AREA, QUARANTINE_AREA,
                             REPORTS_AREA, Lake)

REPO = Path(__file__).resolve().parents[2]
MODEL = "flight_delay"
FIRST_DAY = date(2013, 3, 1)


def report_html(title: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>Evidently-style report.</p></body></html>").encode()


def mean_score(index: int) -> float:
    return round(0.18 + 0.005 * index, 4)


def write_day(lake: Lake, model: str, ds: str, index: int, version: str, labelled: bool) -> None:
    """One monitored day as monitoring.monitor writes it, plus performance.json once its labels are in."""
    drift = min(0.9, 0.1 + 0.05 * index) if index < 12 else 0.15
    effective = max(0.0, drift - 0.1)
    action, reason = ("retrain", "drift") if index == 10 else (("alert", "drift_unconfirmed") if effective >= 0.5
                                                                 else ("none", "stable"))
    observation = {"ds": ds, "rows": 900 + index, "columns": [{"column": "DISTANCE", "drifted": drift > 0.3,
                                                                "effect_size": round(drift / 2, 3)}],
                   "realized_auc": None, "labelled_rows": 0}
    summary = {"model": model, "ds": ds, "model_version": version, "rows": 900 + index, "drift_share": drift,
               "observation": observation, "columns": observation["columns"],
               "decision": {"action": action, "reason": reason, "message": f"day {index}: {reason}",
                            "effective_share": effective, "validation_auc": 0.74, "policy": {"share": 0.5}}}
    rdir = f"{REPORTS_AREA}/{model}/ds={ds}"
    if labelled:
        auc = round(0.73 - 0.006 * index if index < 11 else 0.745, 4)
        metrics = {"roc_auc": auc, "log_loss": 0.5, "late_rate": 0.2 + 0.01 * (index % 5), "mean_score": mean_score(index),
                   "predicted_late_rate": 0.04, "rows": 850.0, "validation_auc": 0.74}
        lake.write_json(f"{rdir}/performance.json", {"model": model, "ds": ds, "model_version": version,
                                                     "labels_known_at": ds, "metrics": metrics})
        lake.write_bytes(f"{rdir}/performance_report.html", report_html(f"Performance report {model} {ds}"))
    lake.write_bytes(f"{rdir}/drift_report.html", report_html(f"Drift report {model} {ds}"))
    lake.write_json(f"{rdir}/evidently.json", {"metrics": []})
    lake.write_json(f"{rdir}/summary.json", summary)
    write_partition(lake, FEATURES_AREA, model, ds)
    write_partition(lake, PREDICTIONS_AREA, model, ds)


def write_partition(lake: Lake, area: str, model: str, ds: str, extracted_at: str = "2024-05-03T10:00:00+00:00") -> None:
    """A committed partition as the page sees it: a manifest (the data file's content does not matter here)."""
    lake.write_bytes(f"{area}/{model}/ds={ds}/part-0.parquet", b"PAR1")
    lake.write_json(f"{area}/{model}/ds={ds}/{MANIFEST}", {"files": ["part-0.parquet"], "extracted_at": extracted_at})


def write_quarantine(lake: Lake, model: str, ds: str, dataset: str = "features") -> None:
    lake.write_json(f"{QUARANTINE_AREA}/{model}.{dataset}/{ds}/reason.json",
                    {"dataset": f"{model}.{dataset}", "rule": "min", "column": "DISTANCE",
                     "detail": "166 values below 1, e.g. -4963.0"})


def write_days(lake: Lake, model: str = MODEL, count: int = 14, retrained_on: int = 11,
               missing: tuple[int, ...] = ()) -> list[str]:
    """``count`` days from FIRST_DAY, scored by v1 then by v2 from ``retrained_on``; the last 2 unlabelled;
    the days at the ``missing`` indexes have no output at all."""
    days = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(count)]
    for i, ds in enumerate(days):
        if i not in missing:
            write_day(lake, model, ds, i, "1" if i < retrained_on else "2", labelled=i < count - 2)
    return days


HOSTILE_REASON = "<!--<script> </script><b>not bold</b> & \u2028"


def log_entry(seq: int, action: str, from_version: str | None, to_version: str, at: str, evidence: dict,
              reason: str | None = None) -> dict:
    return {"seq": seq, "model": MODEL, "action": action, "from_version": from_version, "to_version": to_version,
            "actor": "airflow:flight_delay__train/manual", "reason": reason or f"{action} <b>reason</b>", "at": at,
            "evidence": evidence}


def write_log(lake: Lake, *extra: dict) -> None:
    entries = [log_entry(1, "promote", None, "1", "2024-05-01T10:00:00+00:00", {"cutoff_ds": "2013-02-01"}),
               log_entry(2, "promote", "1", "2", "2024-05-02T10:00:00+00:00",
                         {"cutoff_ds": "2013-03-11", "challenger_auc": 0.7512, "champion_auc": 0.7401,
                          "auc_gain": 0.0111, "promote": True}),
               log_entry(3, "rollback", "2", "1", "2013-03-13T09:00:00+00:00", {}), *extra]
    for entry in entries:
        lake.write_json(f"{PROMOTIONS_AREA}/{MODEL}/{entry['seq']:08d}.json", entry)


VERSIONS = ({"version": "1", "cutoff_ds": "2013-02-01", "trigger_reason": "initial", "holdout_auc": 0.74,
             "gate": "no champion yet", "created": "2024-05-01 10:00", "aliases": [], "run_id": "run1",
             "experiment_id": "7", "candidates": ("c1", "c2")},
            {"version": "2", "cutoff_ds": "2013-03-11", "trigger_reason": "drift", "holdout_auc": 0.75,
             "gate": "gain above margin", "created": "2024-05-02 10:00", "aliases": [], "run_id": "run2",
             "experiment_id": None, "candidates": ()})


@pytest.fixture
def cfg():
    return model_config(MODEL)


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake((tmp_path / "lake").as_uri())
    write_days(lake)
    write_log(lake)
    return lake


def unreachable_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def reports_with(lake: Lake, state: reports_page.RegistryState, runs: list | None = None) -> reports_page.ModelReports:
    """model_reports with the registry state given (no MLflow) and Airflow's task instances, if any."""
    days = reports_page.report_days(lake, MODEL)
    promotions = tuple(reports_page.promotion.entries(lake, MODEL))
    rows = reports_page.day_rows(model_config(MODEL), reports_page.lake_outputs(lake, MODEL, days), runs,
                                 list(promotions))
    return reports_page.ModelReports(MODEL, "Late flights", tuple(days), promotions, state,
                                     reports_page.events(list(promotions), state), rows=rows,
                                     runs_read=runs is not None)


def render(report, **kwargs) -> str:
    return reports_page.render_page([report], "file:///lake", "http://127.0.0.1:5000", nonce="n0nce",
                                    plotly_src="static/p.js", **kwargs)


def test_days_are_read_with_their_files_and_metrics(lake):
    days = reports_page.report_days(lake, MODEL)
    assert [d.ds for d in days] == sorted(d.ds for d in days) and len(days) == 14
    first, last = days[0], days[-1]
    assert set(first.files) == set(reports_page.REPORT_FILES)
    assert "performance_report.html" not in last.files and last.realized_auc is None
    assert first.realized_auc == pytest.approx(0.73) and first.late_rate == pytest.approx(0.2)
    assert first.validation_auc == pytest.approx(0.74) and first.share_threshold == 0.5
    assert days[10].action == "retrain" and days[11].model_version == "2"


def test_stray_and_invalid_directories_are_ignored(lake):
    lake.write_bytes(f"{REPORTS_AREA}/{MODEL}/ds=2013-13-45/summary.json", b"{}")
    lake.write_bytes(f"{REPORTS_AREA}/{MODEL}/ds=2013-03-01/notes.txt", b"x")
    lake.write_bytes(f"{REPORTS_AREA}/{MODEL}/other/summary.json", b"{}")
    days = reports_page.report_days(lake, MODEL)
    assert len(days) == 14 and "notes.txt" not in days[0].files


def test_a_broken_summary_still_lists_the_day(lake):
    lake.write_bytes(f"{REPORTS_AREA}/{MODEL}/ds=2013-03-20/summary.json", b"{not json")
    lake.write_bytes(f"{REPORTS_AREA}/{MODEL}/ds=2013-03-21/drift_report.html", report_html("x"))
    days = {d.ds: d for d in reports_page.report_days(lake, MODEL)}
    assert "unreadable" in days["2013-03-20"].message
    assert days["2013-03-21"].files == ("drift_report.html",) and days["2013-03-21"].message == "no summary.json"


def test_no_reports_at_all(tmp_path):
    assert reports_page.report_days(Lake((tmp_path / "empty").as_uri()), MODEL) == []


def test_events_place_retrainings_promotions_and_rollbacks(lake):
    report = reports_with(lake, reports_page.RegistryState(champion="1", versions=VERSIONS))
    kinds = [(e.ds, e.kind, e.label) for e in report.events]
    assert ("2013-03-11", "retraining", "v2") in kinds and ("2013-03-11", "promotion", "v2") in kinds
    assert ("2013-03-13", "rollback", "v1") in kinds and ("2013-02-01", "promotion", "v1") in kinds
    assert reports_page.outside_chart(report) == 2  # v1's training and promotion precede the charted days


def test_mlflow_unreachable_gives_a_notice_and_the_logged_champion(lake, cfg):
    report = reports_page.model_reports(lake, cfg, unreachable_uri())
    assert report.registry.error and "could not be read" in report.registry.error
    assert report.champion == "1" and report.champion_move["seq"] == 3
    html = render(report)
    assert "MLflow is unreachable" in html and "per the promotion log" in html


def _charts(html: str) -> list[dict]:
    return [json.loads(blob) for blob in re.findall(r'<script type="application/json" data-chart="[^"]+">(.*?)</script>',
                                                    html, re.S)]


def _trace(chart: dict, name: str) -> dict:
    return next(t for t in chart["data"] if t["name"] == name)


def test_page_renders_days_links_charts_and_log(lake):
    report = reports_with(lake, reports_page.RegistryState(champion="1", versions=VERSIONS))
    html = render(report)
    assert "<title>Model reports</title>" in html and '<script nonce="n0nce" src="static/p.js">' in html
    assert html.count('href="flight_delay/2013-03-01/drift_report.html"') == 1
    assert 'href="flight_delay/2013-03-01/performance_report.html"' in html
    assert 'flight_delay/2013-03-14/performance_report.html' not in html  # not labelled yet
    assert "<b>reason</b>" not in html and "&lt;b&gt;reason&lt;/b&gt;" in html  # log text is escaped
    charts = _charts(html)
    assert [c["layout"]["title"]["text"] for c in charts] == ["Drifted-feature share", "ROC AUC",
                                                              reports_page.CALIBRATION_TITLE]
    names = {t["name"] for c in charts for t in c["data"]}
    assert {"retraining cut-off", "promotion", "rollback", "realized ROC AUC", "late rate (realized)"} <= names
    assert 'data-champion="1"' in html and "trained on data before 2013-02-01" in html
    assert "holdout AUC 0.7512 vs 0.7401 (+0.0111)" in html


def test_json_links_say_json(lake):
    html = render(reports_with(lake, reports_page.RegistryState()))
    for name, text in (("summary.json", "summary (JSON)"), ("performance.json", "performance (JSON)"),
                       ("evidently.json", "Evidently (JSON)")):
        assert f'<a href="flight_delay/2013-03-01/{name}">{text}</a>' in html


# -- embedded JSON is inert (issue 12) ------------------------------------------------------------------------
def test_script_json_escapes_everything_that_could_end_or_comment_a_script():
    value = {"reason": "</script><!--<script>alert(1)</script>-->", "amp": "&lt;", "seps": "a\u2028b\u2029c"}
    text = reports_page.script_json(value)
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(text) == value  # JSON.parse reads the same values back


def test_a_hostile_reason_in_the_log_leaves_the_page_intact(lake):
    """A rollback reason is free text from the trigger form; the log is append-only, so it stays for good."""
    write_log(lake, log_entry(4, "rollback", "1", "2", "2013-03-14T09:00:00+00:00", {}, reason=HOSTILE_REASON))
    html = render(reports_with(lake, reports_page.RegistryState(champion="2", versions=VERSIONS)))
    blocks = re.findall(r'<script type="application/json" data-chart="[^"]+">(.*?)</script>', html, re.S)
    assert len(blocks) == 3 and all("<" not in b and ">" not in b and "&" not in b for b in blocks)
    assert html.count("<script") == 5  # three data blocks, plotly.js and the loader: nothing was opened by the reason
    rollback_lines = _trace(_charts(html)[0], "rollback")["text"]
    assert "&lt;!--&lt;script&gt;" in rollback_lines[-2]  # shown as text in the hover, not interpreted by plotly
    assert "&lt;!--&lt;script&gt; &lt;/script&gt;&lt;b&gt;not bold&lt;/b&gt;" in html  # and in the log table
    assert re.search(r"<table class=\"versions\">", html)  # the tables after the log are still there


def test_the_page_allows_only_its_own_nonced_scripts(client):
    page = client.get("/")
    csp = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    nonce = re.fullmatch(r"'nonce-([A-Za-z0-9_-]+)'", csp["script-src"]).group(1)
    assert csp["default-src"] == "'none'" and csp["frame-ancestors"] == "'self'" and csp["base-uri"] == "'none'"
    scripts = re.findall(r"<script([^>]*)>", page.text)
    executable = [attrs for attrs in scripts if 'type="application/json"' not in attrs]
    assert len(executable) == 2 and all(f'nonce="{nonce}"' in attrs for attrs in executable)
    assert client.get("/").headers["content-security-policy"] != page.headers["content-security-policy"]  # per response


# -- calibration, gaps, statuses (issue 16) ---------------------------------------------------------------------
def test_calibration_chart_shows_mean_predicted_probability_against_realized_late_rate(lake):
    report = reports_with(lake, reports_page.RegistryState())
    calibration = reports_page.figures(report)[2]
    assert calibration["layout"]["title"]["text"] == "Calibration: predicted vs realized late rate"
    x = _trace(calibration, "mean predicted probability")["x"]
    assert _trace(calibration, "mean predicted probability")["y"][:3] == [mean_score(0), mean_score(1), mean_score(2)]
    assert _trace(calibration, "late rate (realized)")["y"][0] == pytest.approx(0.2)
    flagged = _trace(calibration, "share scored ≥ 0.5 (decision threshold)")
    assert flagged["y"][0] == 0.04 and x[0] == "2013-03-01"


def test_chart_lines_break_at_days_without_a_value(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    days = write_days(lake, missing=(4, 5))
    report = reports_with(lake, reports_page.RegistryState())
    for chart, name in zip(reports_page.figures(report), ("effective share (policy)", "realized ROC AUC",
                                                          "mean predicted probability")):
        trace = _trace(chart, name)
        assert trace["x"] == days and trace["connectgaps"] is False
        assert trace["y"][4] is None and trace["y"][5] is None and trace["y"][3] is not None


def test_nan_metrics_are_left_out_of_the_chart_json(lake):
    rdir = f"{REPORTS_AREA}/{MODEL}/ds=2013-03-03"
    lake.write_bytes(f"{rdir}/summary.json", lake.read_bytes(f"{rdir}/summary.json").replace(
        b'"drift_share": 0.2', b'"drift_share": NaN'))
    html = render(reports_with(lake, reports_page.RegistryState()))
    assert "NaN" not in html and _trace(_charts(html)[0], "drifted share (Evidently)")["y"][2] is None


def _rows(report) -> dict:
    return {row.ds: row for row in report.rows}


def test_every_schedule_day_is_listed_with_its_status(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    write_days(lake, missing=(4, 5, 7))
    write_quarantine(lake, MODEL, "2013-03-05")
    write_quarantine(lake, MODEL, "2013-03-02", dataset="labels")  # the day was scored all the same
    write_partition(lake, FEATURES_AREA, MODEL, "2013-03-08", extracted_at="2024-05-03T10:00:00+00:00")
    write_partition(lake, FEATURES_AREA, MODEL, "2013-02-27", extracted_at="2024-04-30T10:00:00+00:00")
    write_log(lake)
    rows = _rows(reports_with(lake, reports_page.RegistryState()))
    assert list(rows) == [f"2013-{m:02d}-{d:02d}" for m, n in ((1, 31), (2, 28), (3, 14)) for d in range(1, n + 1)]
    assert {ds: rows[ds].status for ds in ("2013-03-01", "2013-03-05", "2013-03-06", "2013-03-08", "2013-02-27",
                                           "2013-02-28")} == {
        "2013-03-01": "scored", "2013-03-05": "quarantined", "2013-03-06": "not run",
        "2013-03-08": "not run", "2013-02-27": "skipped", "2013-02-28": "not run"}
    assert rows["2013-03-08"].note == "features ingested, not scored"  # a champion existed by then
    assert rows["2013-02-27"].note == "no champion when its features were ingested"
    assert rows["2013-03-02"].status == "scored" and rows["2013-03-02"].quarantines == ("labels",)


def test_the_schedule_follows_the_cron_and_ends_with_the_last_output(cfg, tmp_path):
    assert reports_page.schedule_days("0 6 * * 1", "2013-03-01", None, "2013-03-20") == [
        "2013-03-04", "2013-03-11", "2013-03-18"]
    assert reports_page.schedule_days(cfg.schedule.ingest, cfg.schedule.start_date, "2013-01-03", "2013-03-20") == [
        "2013-01-01", "2013-01-02", "2013-01-03"]
    empty = Lake((tmp_path / "empty").as_uri())
    assert reports_with(empty, reports_page.RegistryState()).rows == ()


def _run(task: str, state: str, days: tuple[str, ...], order: str = "1", stage: str = "ingest") -> reports_page.TaskRun:
    return reports_page.TaskRun(dag_id=f"{MODEL}__{stage}", task_id=task, run_id=f"scheduled__{days[0]}T00:00:00+00:00",
                                state=state, try_number=1, map_index=-1, days=days, order=order)


def test_failed_and_skipped_days_come_from_airflow_task_instances(lake):
    runs = [_run("ingest_features", "failed", ("2013-03-16",)),
            _run("ingest_features", "failed", ("2013-03-15",), order="1"),
            _run("ingest_features", "success", ("2013-03-15",), order="2"),   # a re-run fixed it
            _run("score_days", "skipped", ("2013-03-15",), stage="score"),
            _run("ingest_labels", "failed", ("2013-03-01",)),                  # the day was scored all the same
            _run("nothing_to_do", "skipped", ("2013-03-02",), stage="monitor"),
            _run("decide", "upstream_failed", ("2013-03-17",), stage="monitor")]
    rows = _rows(reports_with(lake, reports_page.RegistryState(), runs=runs))
    assert rows["2013-03-16"].status == "failed" and rows["2013-03-16"].failures[0].task_id == "ingest_features"
    assert rows["2013-03-15"].status == "skipped" and rows["2013-03-15"].note == "no champion"
    assert rows["2013-03-01"].status == "scored" and [f.task_id for f in rows["2013-03-01"].failures] == ["ingest_labels"]
    assert rows["2013-03-02"].status == "scored"
    assert (rows["2013-03-17"].status, rows["2013-03-17"].note, rows["2013-03-17"].failures) == (
        "failed", "monitor.decide upstream_failed", ())
    href = reports_page.task_log_href(rows["2013-03-16"].failures[0])
    assert href == ("../dags/flight_delay__ingest/runs/scheduled__2013-03-16T00%3A00%3A00%2B00%3A00"
                    "/tasks/ingest_features?try_number=1")


def test_days_of_a_run_come_from_its_asset_events_then_its_param_then_its_logical_date():
    from datetime import datetime, timezone

    assert reports_page.run_days([{"days": ["2013-03-02", "bad"]}, {"days": ["2013-03-01"]}], {"ds": "2013-01-01"},
                                 None) == ("2013-03-01", "2013-03-02")
    assert reports_page.run_days([], {"ds": "2013-01-01"}, None) == ("2013-01-01",)
    assert reports_page.run_days([{}], None, datetime(2013, 2, 3, tzinfo=timezone.utc)) == ("2013-02-03",)
    assert reports_page.run_days([], {"ds": "../x"}, None) == ()


def test_days_table_shows_statuses_with_quarantine_and_log_links(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    write_days(lake, missing=(4,))
    write_quarantine(lake, MODEL, "2013-03-05")
    write_log(lake)
    html = render(reports_with(lake, reports_page.RegistryState(),
                               runs=[_run("ingest_features", "failed", ("2013-03-15",))]))
    assert re.search(r'<tr data-ds="2013-03-05" data-status="quarantined".*?<a class="quarantine-link" '
                     r'href="flight_delay/2013-03-05/quarantine/features/reason.json">', html, re.S)
    assert re.search(r'<tr data-ds="2013-03-15" data-status="failed".*?<a class="task-log" href="../dags/flight_delay'
                     r'__ingest/runs/[^"]+/tasks/ingest_features\?try_number=1" target="_top">', html, re.S)
    assert "task states were not readable" not in html
    assert "task states were not readable" in render(reports_with(lake, reports_page.RegistryState()))


# -- the champion timeline and MLflow links ---------------------------------------------------------------------
def test_external_moves_are_on_the_timeline(lake):
    write_log(lake, {"seq": 4, "model": MODEL, "action": "external_move", "from_version": "1", "to_version": "3",
                     "actor": "airflow:flight_delay__score/scheduled", "at": "2013-03-12T08:00:00+00:00",
                     "reason": "champion alias moved outside the platform"})
    report = reports_with(lake, reports_page.RegistryState(champion="3", versions=VERSIONS))
    assert ("2013-03-12", "external_move", "v3") in [(e.ds, e.kind, e.label) for e in report.events]
    html = render(report)
    assert "alias moved outside the platform" in {t["name"] for t in _charts(html)[0]["data"]}
    assert re.search(r'<tr data-action="external_move">.*?v1</a> → <a[^>]*>v3</a>', html, re.S)


def test_a_day_scored_by_a_version_the_log_never_made_champion_is_marked(lake):
    summary_path = f"{REPORTS_AREA}/{MODEL}/ds=2013-03-14/summary.json"
    lake.write_json(summary_path, {**lake.read_json(summary_path), "model_version": "9"})
    html = render(reports_with(lake, reports_page.RegistryState()))
    row = re.search(r'<tr data-ds="2013-03-14".*?</tr>', html, re.S).group(0)
    assert "not in log" in row and "not in log" not in re.search(r'<tr data-ds="2013-03-13".*?</tr>', html, re.S).group(0)


def test_mlflow_links_use_the_mlflow_3_ui_routes_in_model_training_mode():
    links = reports_page.MlflowLinks.for_ui("http://mlflow:5000/")
    ml = "workflowType=machine_learning"
    assert links.models() == f"http://mlflow:5000/#/models?{ml}"
    assert links.version("flight_delay", "3") == f"http://mlflow:5000/#/models/flight_delay/versions/3?{ml}"
    assert links.run("abc", "7") == f"http://mlflow:5000/#/experiments/7/runs/abc?{ml}"
    assert links.run("abc") == f"http://mlflow:5000/#/runs/abc?{ml}"
    assert links.trainings("7") == f"http://mlflow:5000/#/experiments/7/runs?viewStateShareKey=trainings&{ml}"
    assert links.compare(["a", "b"], "7") == ("http://mlflow:5000/#/compare-runs?runs=%5B%22a%22%2C%22b%22%5D"
                                               f"&experiments=%5B%227%22%5D&{ml}")
    assert links.trainings(None) is None and links.compare(["a"], None) is None
    assert reports_page.MlflowLinks.for_ui("file:///mlruns").version("m", "1") is None


def test_versions_runs_searches_and_the_mlflow_address_are_links(lake):
    state = reports_page.RegistryState(champion="1", versions=VERSIONS, experiment_id="7")
    html = render(reports_with(lake, state), mlflow_ui="http://mlflow.example:5000")
    ml = "workflowType=machine_learning"
    assert f'<a class="mlflow-home" href="http://mlflow.example:5000/#/models?{ml}"' in html
    assert f'href="http://mlflow.example:5000/#/models/flight_delay/versions/2?{ml}"' in html
    assert f'href="http://mlflow.example:5000/#/experiments/7/runs/run1?{ml}"' in html
    assert f'href="http://mlflow.example:5000/#/runs/run2?{ml}"' in html
    assert (f'<a class="mlflow-trainings" href="http://mlflow.example:5000/#/experiments/7/runs?'
            f'viewStateShareKey=trainings&amp;{ml}"') in html
    champion = re.search(r'<div class="champion".*?</div>\s*</div>', html, re.S).group(0)
    assert "compare 2 candidates" in champion and "compare-runs?runs=%5B%22c1%22%2C%22c2%22%5D" in champion


def test_charts_without_labels_say_so(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    for i in range(3):
        write_day(lake, MODEL, f"2013-04-0{i + 1}", i, "1", labelled=False)
    report = reports_with(lake, reports_page.RegistryState())
    drift, auc, calibration = reports_page.figures(report)
    assert "annotations" not in drift["layout"]
    assert auc["layout"]["annotations"][0]["text"] == "no labelled days yet"
    assert calibration["layout"]["annotations"][0]["text"] == "no labelled days yet"


def test_a_model_without_reports_renders(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    report = reports_with(lake, reports_page.RegistryState())
    html = render(report)
    assert "No runs yet" in html and "No champion moves logged yet" in html and not _charts(html)


def test_script_end_tags_cannot_escape_chart_json():
    assert "</script>" not in reports_page.figure_json({"data": [{"name": "</script><script>alert(1)"}]})


@pytest.mark.parametrize("model, ds, name", [
    ("../flight_delay", "2013-03-01", "summary.json"),
    ("unknown", "2013-03-01", "summary.json"),
    ("flight_delay", "2013-03-01/..", "summary.json"),
    ("flight_delay", "../../promotions", "summary.json"),
    ("flight_delay", "2013-02-30", "summary.json"),
    ("flight_delay", "2013-03-01", "../../../etc/passwd"),
    ("flight_delay", "2013-03-01", "_manifest.json"),
    ("flight_delay", "2013-03-31", "summary.json"),  # valid, but no such report
])
def test_report_files_are_checked_strictly(lake, model, ds, name):
    with pytest.raises(reports_page.ReportNotFound):
        reports_page.report_file(lake, {MODEL}, model, ds, name)


def test_report_file_is_served_with_its_media_type(lake):
    payload, media_type = reports_page.report_file(lake, {MODEL}, MODEL, "2013-03-01", "drift_report.html")
    assert b"<title>Drift report flight_delay 2013-03-01</title>" in payload and media_type.startswith("text/html")
    assert reports_page.report_file(lake, {MODEL}, MODEL, "2013-03-01", "summary.json")[1] == "application/json"


def _header_bar(html: str) -> str:
    return re.search(r'<div class="mlplatform-report-header".*?</div>', html, re.S).group(0)


def test_served_reports_get_a_title_and_a_header_bar_the_file_keeps_neither(lake):
    path = f"{REPORTS_AREA}/{MODEL}/ds=2013-03-12/drift_report.html"
    on_disk = lake.read_bytes(path)
    payload, _ = reports_page.served_report(lake, {MODEL}, MODEL, "2013-03-12", "drift_report.html")
    html = payload.decode()
    assert "<title>Drift report · flight_delay · 2013-03-12</title>" in html and html.count("<title>") == 1
    bar = _header_bar(html)
    assert html.index(bar) == html.index("<body>") + len("<body>")
    assert 'href="../../back/flight_delay"' in bar and "← Model reports" in bar
    assert all(text in bar for text in ("Drift report", "flight_delay", "2013-03-12", "v2"))
    assert lake.read_bytes(path) == on_disk  # injected when serving only
    summary, media_type = reports_page.served_report(lake, {MODEL}, MODEL, "2013-03-12", "summary.json")
    assert summary == lake.read_bytes(f"{REPORTS_AREA}/{MODEL}/ds=2013-03-12/summary.json")


def test_the_header_goes_into_the_real_body_not_into_data_that_looks_like_tags(lake):
    """Evidently inlines data values in a <script> in <head>; a value may read like a tag."""
    report = ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='UTF-8'>\n"
              "<script>var data = {\"v\": \"<body><title>x</title>\"};</script>\n<style>p{}</style>\n</head>\n"
              "<body class='evidently'>\n<div id='root'></div>\n</body>\n</html>\n")
    lake.write_bytes(f"{REPORTS_AREA}/{MODEL}/ds=2013-03-03/performance_report.html", report.encode())
    html = reports_page.served_report(lake, {MODEL}, MODEL, "2013-03-03", "performance_report.html")[0].decode()
    assert "<head><title>Performance report · flight_delay · 2013-03-03</title>" in html and html.count("<title>") == 2
    assert html.index(_header_bar(html)) == html.index("<body class='evidently'>") + len("<body class='evidently'>")
    assert '{"v": "<body><title>x</title>"}' in html  # the data is untouched


def test_plugin_serves_quarantine_reasons_strictly(client, lake):
    write_quarantine(lake, MODEL, "2013-03-05")
    reason = client.get("/flight_delay/2013-03-05/quarantine/features/reason.json")
    assert reason.status_code == 200 and reason.json()["rule"] == "min"
    assert reason.headers["content-type"] == "application/json"
    for path in ("/flight_delay/2013-03-05/quarantine/batch/reason.json",
                 "/flight_delay/2013-03-05/quarantine/..%2Ffeatures/reason.json",
                 "/flight_delay/2013-03-06/quarantine/features/reason.json",
                 "/flight_delay/2013-02-30/quarantine/features/reason.json",
                 "/other/2013-03-05/quarantine/features/reason.json",
                 "/flight_delay/2013-03-05/quarantine/features/batch.parquet"):
        assert client.get(path).status_code == 404, path


def test_the_back_link_bounces_to_the_model_on_the_page(client):
    back = client.get("/back/flight_delay")
    assert back.status_code == 200 and '<meta http-equiv="refresh" content="0; url=../#model-flight_delay">' in back.text
    assert back.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'self'"
    for bad in ("..%2Fx", "a%22b", "x%3Cscript%3E"):
        assert client.get(f"/back/{bad}").status_code == 404


def test_plotly_js_ships_with_the_plotly_package():
    name, payload = reports_page.plotly_js()
    assert name == reports_page.plotly_js_name() and len(payload) > 1_000_000


# -- the plugin's FastAPI app, with Airflow's auth dependency replaced ----------------------------------------
@pytest.fixture
def client(lake, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("MLOPS_LAKE_URI", lake.root_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", unreachable_uri())
    spec = importlib.util.spec_from_file_location("mlplatform_plugin_under_test", REPO / "plugins" / "mlplatform_plugin.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    plugin.app.dependency_overrides[plugin.require_viewer] = lambda: None
    with TestClient(plugin.app) as test_client:
        yield test_client


def test_plugin_serves_the_page_and_report_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>Model reports</title>" in page.text
    assert "MLflow is unreachable" in page.text
    report = client.get("/flight_delay/2013-03-01/drift_report.html")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "Drift report flight_delay 2013-03-01" in report.text and "mlplatform-report-header" in report.text
    assert report.headers["content-security-policy"] == "sandbox allow-scripts", "no Airflow session for its scripts"
    summary = client.get("/flight_delay/2013-03-01/summary.json")
    assert summary.status_code == 200 and "content-security-policy" not in summary.headers
    js = client.get(f"/static/{reports_page.plotly_js_name()}")
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]


@pytest.mark.parametrize("path", [
    "/flight_delay/2013-03-01/_manifest.json",
    "/flight_delay/..%2F..%2Fpromotions/summary.json",
    "/flight_delay/2013-03-01/..%2F..%2F..%2Fetc%2Fpasswd",
    "/..%2Fflight_delay/2013-03-01/summary.json",
    "/other/2013-03-01/summary.json",
    "/static/plotly.js",
])
def test_plugin_refuses_anything_else(client, path):
    assert client.get(path).status_code == 404


def test_a_day_evaluated_before_its_monitor_ran_shows_its_performance(lake):
    """Out of order: the evaluation wrote performance.json before the day's own monitor wrote its summary."""
    metrics = {"roc_auc": 0.7, "rows": 800, "late_rate": 0.25, "predicted_late_rate": 0.2, "validation_auc": 0.74}
    lake.write_json(f"{REPORTS_AREA}/{MODEL}/ds=2013-03-20/performance.json",
                    {"model": MODEL, "ds": "2013-03-20", "model_version": "2", "labels_known_at": "2013-03-22",
                     "metrics": metrics})
    day = {d.ds: d for d in reports_page.report_days(lake, MODEL)}["2013-03-20"]
    assert (day.realized_auc, day.late_rate, day.model_version) == (0.7, 0.25, "2")
    assert day.drift_share is None and day.message == ""
