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
from mlplatform.lake import REPORTS_AREA
from mlplatform.lake import Lake
from mlplatform.lake import PROMOTIONS_AREA

REPO = Path(__file__).resolve().parents[2]
MODEL = "flight_delay"
FIRST_DAY = date(2013, 3, 1)


def report_html(title: str) -> bytes:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>Evidently-style report.</p></body></html>").encode()


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
        metrics = {"roc_auc": auc, "log_loss": 0.5, "late_rate": 0.2 + 0.01 * (index % 5),
                   "predicted_late_rate": 0.21, "rows": 850, "validation_auc": 0.74}
        lake.write_json(f"{rdir}/performance.json", {"model": model, "ds": ds, "model_version": version,
                                                     "labels_known_at": ds, "metrics": metrics})
        lake.write_bytes(f"{rdir}/performance_report.html", report_html(f"Performance report {model} {ds}"))
    lake.write_bytes(f"{rdir}/drift_report.html", report_html(f"Drift report {model} {ds}"))
    lake.write_json(f"{rdir}/evidently.json", {"metrics": []})
    lake.write_json(f"{rdir}/summary.json", summary)


def write_days(lake: Lake, model: str = MODEL, count: int = 14, retrained_on: int = 11) -> list[str]:
    """``count`` days from FIRST_DAY, scored by v1 then by v2 from ``retrained_on``; the last 2 unlabelled."""
    days = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(count)]
    for i, ds in enumerate(days):
        write_day(lake, model, ds, i, "1" if i < retrained_on else "2", labelled=i < count - 2)
    return days


def log_entry(seq: int, action: str, from_version: str | None, to_version: str, at: str, evidence: dict) -> dict:
    return {"seq": seq, "model": MODEL, "action": action, "from_version": from_version, "to_version": to_version,
            "actor": "airflow:flight_delay__train/manual", "reason": f"{action} <b>reason</b>", "at": at,
            "evidence": evidence}


def write_log(lake: Lake) -> None:
    entries = [log_entry(1, "promote", None, "1", "2024-05-01T10:00:00+00:00", {"cutoff_ds": "2013-02-01"}),
               log_entry(2, "promote", "1", "2", "2024-05-02T10:00:00+00:00",
                         {"cutoff_ds": "2013-03-11", "challenger_auc": 0.7512, "champion_auc": 0.7401,
                          "auc_gain": 0.0111, "promote": True}),
               log_entry(3, "rollback", "2", "1", "2013-03-13T09:00:00+00:00", {})]
    for entry in entries:
        lake.write_json(f"{PROMOTIONS_AREA}/{MODEL}/{entry['seq']:08d}.json", entry)


VERSIONS = ({"version": "1", "cutoff_ds": "2013-02-01", "trigger_reason": "initial", "holdout_auc": 0.74,
             "gate": "no champion yet", "created": "2024-05-01 10:00", "aliases": []},
            {"version": "2", "cutoff_ds": "2013-03-11", "trigger_reason": "drift", "holdout_auc": 0.75,
             "gate": "gain above margin", "created": "2024-05-02 10:00", "aliases": []})


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


def reports_with(lake: Lake, state: reports_page.RegistryState) -> reports_page.ModelReports:
    days = tuple(reports_page.report_days(lake, MODEL))
    promotions = tuple(reports_page.promotion.entries(lake, MODEL))
    return reports_page.ModelReports(MODEL, "Late flights", days, promotions, state,
                                     reports_page.events(list(promotions), state))


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


def test_mlflow_unreachable_gives_a_notice_and_the_logged_champion(lake):
    report = reports_page.model_reports(lake, MODEL, "Late flights", unreachable_uri())
    assert report.registry.error and "could not be read" in report.registry.error
    assert report.champion == "1" and report.champion_move["seq"] == 3
    html = reports_page.render_page([report], lake.root_uri, "http://mlflow.invalid")
    assert "MLflow is unreachable" in html and "per the promotion log" in html


def _charts(html: str) -> list[dict]:
    return [json.loads(blob) for blob in re.findall(r'<script type="application/json" data-chart="[^"]+">(.*?)</script>',
                                                    html, re.S)]


def test_page_renders_days_links_charts_and_log(lake):
    report = reports_with(lake, reports_page.RegistryState(champion="1", versions=VERSIONS))
    html = reports_page.render_page([report], lake.root_uri, "http://127.0.0.1:5000", plotly_src="static/p.js")
    assert "<title>Model reports</title>" in html and '<script src="static/p.js">' in html
    assert html.count('href="flight_delay/2013-03-01/drift_report.html"') == 1
    assert 'href="flight_delay/2013-03-01/performance_report.html"' in html
    assert 'flight_delay/2013-03-14/performance_report.html' not in html  # not labelled yet
    assert "<b>reason</b>" not in html and "&lt;b&gt;reason&lt;/b&gt;" in html  # log text is escaped
    charts = _charts(html)
    assert [c["layout"]["title"]["text"] for c in charts] == ["Drifted-feature share", "ROC AUC", "Late rate"]
    names = {t["name"] for c in charts for t in c["data"]}
    assert {"retraining cut-off", "promotion", "rollback", "realized ROC AUC", "late rate (realized)"} <= names
    assert 'data-champion="1"' in html and "trained on data before 2013-02-01" in html
    assert "holdout AUC 0.7512 vs 0.7401 (+0.0111)" in html


def test_charts_without_labels_say_so(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    for i in range(3):
        write_day(lake, MODEL, f"2013-04-0{i + 1}", i, "1", labelled=False)
    report = reports_with(lake, reports_page.RegistryState())
    drift, auc, late = reports_page.figures(report)
    assert "annotations" not in drift["layout"]
    assert auc["layout"]["annotations"][0]["text"] == "no labelled days yet"
    assert late["layout"]["annotations"][0]["text"] == "no labelled days yet"


def test_a_model_without_reports_renders(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    report = reports_with(lake, reports_page.RegistryState())
    html = reports_page.render_page([report], lake.root_uri, "x")
    assert "No reports yet" in html and "No champion moves logged yet" in html and not _charts(html)


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
    assert "Drift report flight_delay 2013-03-01" in report.text
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
