"""Alert messages as Block Kit, checked in the outbox (the test session's Slack connection has no
token). Posting over HTTP is covered by tests/integration/test_slack_webhook.py."""

import json
import logging
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from mlplatform import alerts
from mlplatform.config import settings
from mlplatform.contracts import ContractViolation
from mlplatform.registry import UntrustedModel

AIRFLOW_URL, MLFLOW_URL = "http://airflow.test:8080", "http://mlflow.test:5000"

DRIFT_OUTCOME = {
    "ds": "2013-02-03", "action": "retrain", "reason": "drift",
    "message": "2 of the last 3 judged days drifted (share >= 0.3)", "drift_share": 0.45,
    "effective_share": 0.4, "report_uri": "file:///lake/reports/flight_delay/ds=2013-02-03/drift_report.html",
    "top_drifted": [["DISTANCE", 0.8123], ["DEP_HOUR", 0.31]],  # tuples come back from XCom as lists
}
GATE_OUTCOME = {
    "version": "7", "cutoff_ds": "2013-02-03", "reason": "drift", "run_id": "abc123",
    "gate": {"promote": True, "reason": "AUC gain CI lower bound 0.0041 > 0.0", "auc_gain": 0.0123,
             "ci95": [0.0041, 0.0209], "challenger_auc": 0.7312, "champion_auc": 0.7189, "holdout_rows": 12345},
}


@pytest.fixture(autouse=True)
def urls(monkeypatch):
    monkeypatch.setenv("MLOPS_AIRFLOW_URL", AIRFLOW_URL)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", MLFLOW_URL)


def last_outbox() -> dict:
    return json.loads(settings().outbox_path.read_text().splitlines()[-1])


def texts(blocks: list[dict]) -> str:
    """Every piece of text and every URL in the blocks, one per line."""
    out = []
    for block in blocks:
        for item in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if item:
                out.append(item["text"]["text"] if item.get("type") == "button" else item["text"])
                out.extend([item["url"]] if "url" in item else [])
    return "\n".join(out)


def block_types(blocks: list[dict]) -> list[str]:
    return [b["type"] for b in blocks]


def test_without_webhook_alerts_go_to_outbox():
    where = alerts.send("drift", "drift on flight_delay", [{"type": "section"}])
    assert where == "outbox"
    last = last_outbox()
    assert last["kind"] == "drift" and last["text"] == "drift on flight_delay"
    assert last["blocks"] == [{"type": "section"}]
    assert set(last) == {"kind", "text", "blocks", "at"}


def test_failure_notifier_falls_back_to_outbox():
    notifier = alerts.AlertNotifier(slack_webhook_conn_id="slack_alerts", text="task x failed")
    notifier.notify({})
    last = last_outbox()
    assert last == {**last, "kind": "task_failure", "text": "task x failed"}


def test_drift_alert_has_decision_top_features_and_links():
    assert alerts.drift_alert("flight_delay", DRIFT_OUTCOME) == "outbox"
    msg = last_outbox()
    assert msg["kind"] == "drift"
    blocks = msg["blocks"]
    assert block_types(blocks)[0] == "header" and block_types(blocks)[-1] == "actions"
    assert "flight_delay" in blocks[0]["text"]["text"] and "2013-02-03" in blocks[0]["text"]["text"]
    body = texts(blocks)
    assert "*Decision:* Retraining requested (reason `drift`)" in body
    assert "2 of the last 3 judged days drifted (share &gt;= 0.3)" in body  # mrkdwn-escaped
    assert "*`DISTANCE`*\n0.8123" in body and "*`DEP_HOUR`*\n0.3100" in body
    assert "*Drifted columns*\n45%" in body
    buttons = {b["text"]["text"]: b["url"] for b in blocks[-1]["elements"]}
    assert buttons == {
        "Drift report": f"{AIRFLOW_URL}/model-reports/flight_delay/2013-02-03/drift_report.html",
        "Monitor DAG": f"{AIRFLOW_URL}/dags/flight_delay__monitor"}
    assert "DISTANCE (0.8123)" in msg["text"]


def test_drift_alert_without_drifted_features_says_none():
    alerts.drift_alert("flight_delay", {**DRIFT_OUTCOME, "action": "alert", "top_drifted": []})
    body = texts(last_outbox()["blocks"])
    assert "*Top drifted features:* none" in body and "*Decision:* No retraining yet, alert only" in body


def test_promotion_alert_has_metrics_with_the_confidence_interval():
    assert alerts.gate_alert("flight_delay", "7", GATE_OUTCOME, promoted=True, action="promote",
                             actor="airflow-user:admin", from_version="6") == "outbox"
    msg = last_outbox()
    assert msg["kind"] == "promotion"
    assert msg["blocks"][0]["text"]["text"] == ":trophy: Promoted flight_delay v7"
    body = texts(msg["blocks"])
    assert "*Challenger AUC*\n0.7312" in body and "*Champion AUC (v6)*\n0.7189" in body
    assert "*AUC gain*\n+0.0123 (95% CI [+0.0041, +0.0209])" in body
    assert "*Holdout rows*\n12,345" in body
    assert "*Gate passed:* AUC gain CI lower bound 0.0041 &gt; 0.0" in body
    assert "from v6 to v7" in body
    assert f"{MLFLOW_URL}/#/models/flight_delay/versions/7" in body
    assert f"{AIRFLOW_URL}/dags/flight_delay__train" in body
    assert "[+0.0041, +0.0209]" in msg["text"]


def test_rejection_alert_against_the_baseline():
    outcome = {**GATE_OUTCOME, "gate": {**GATE_OUTCOME["gate"], "promote": False, "champion_auc": None,
                                        "reason": "too few holdout rows", "ci95": [-0.01, 0.02]}}
    alerts.gate_alert("flight_delay", "7", outcome, promoted=False, action="reject", actor="airflow:run",
                      from_version=None)
    msg = last_outbox()
    assert msg["kind"] == "rejection" and msg["blocks"][0]["text"]["text"].startswith(":no_entry: Rejected")
    body = texts(msg["blocks"])
    assert "*Baseline AUC (prior rate)*\n0.5000" in body and "95% CI [-0.0100, +0.0200]" in body
    assert "*Gate refused:* too few holdout rows" in body and "The champion stays none" in body


def test_forced_promotion_says_so():
    outcome = {**GATE_OUTCOME, "gate": {**GATE_OUTCOME["gate"], "promote": False, "reason": "CI includes 0"}}
    alerts.gate_alert("flight_delay", "7", outcome, promoted=True, action="manual_promote", actor="airflow-user:bob",
                      from_version="6")
    body = texts(last_outbox()["blocks"])
    assert "`manual_promote` by airflow-user:bob" in body and "Forced by hand although the gate refused" in body
    assert "*Gate refused:* CI includes 0" in body


def test_rollback_alert():
    alerts.rollback_alert("flight_delay", "7", "6", "airflow-user:admin", "latency regression <p99>")
    msg = last_outbox()
    assert msg["kind"] == "rollback" and msg["blocks"][0]["text"]["text"] == ":rewind: Rolled back flight_delay to v6"
    body = texts(msg["blocks"])
    assert "*Reason:* latency regression &lt;p99&gt;" in body
    assert "*From*\nv7" in body and "*To*\nv6" in body and "*By*\nairflow-user:admin" in body
    assert f"{MLFLOW_URL}/#/models/flight_delay/versions/6" in body
    assert f"{AIRFLOW_URL}/dags/flight_delay__rollback" in body


def test_blocks_respect_slack_limits():
    long = "x" * 5000
    assert len(alerts.header(long)["text"]["text"]) == 150
    assert len(alerts.section(long)["text"]["text"]) == 3000
    assert len(alerts.fields({str(i): long for i in range(12)})["fields"]) == 10


def failure_context(exception) -> dict:
    """What the task runner hands an on_failure_callback, reduced to what the templates use."""
    from airflow.sdk import DAG

    run_id = "scheduled__2013-02-03T00:00:00+00:00"
    ti = SimpleNamespace(task_id="ingest_features", try_number=3,
                         log_url=f"{AIRFLOW_URL}/dags/flight_delay__ingest/runs/x/tasks/ingest_features?try_number=3")
    return {"dag": DAG("flight_delay__ingest", schedule=None), "ti": ti, "run_id": run_id,
            "logical_date": datetime(2013, 2, 3, tzinfo=timezone.utc), "exception": exception}


def test_failure_notifier_renders_the_task_context():
    alerts.failure_notifier()(failure_context(RuntimeError("division by zero in <lambda> & friends")))
    msg = last_outbox()
    assert msg["kind"] == "task_failure"
    blocks = msg["blocks"]
    assert blocks[0]["text"]["text"] == ":red_circle: Task failed: flight_delay__ingest"
    body = texts(blocks)
    assert "*DAG*\n`flight_delay__ingest`" in body and "*Task*\n`ingest_features`" in body
    assert "*Logical date*\n2013-02-03 00:00:00+00:00" in body and "*Try*\n3" in body
    assert "```division by zero in &lt;lambda&gt; &amp; friends```" in body
    buttons = {b["text"]["text"]: b["url"] for b in blocks[-1]["elements"]}
    assert buttons == {
        "Task log": f"{AIRFLOW_URL}/dags/flight_delay__ingest/runs/x/tasks/ingest_features?try_number=3",
        "DAG run": f"{AIRFLOW_URL}/dags/flight_delay__ingest/runs/scheduled__2013-02-03T00%3A00%3A00%2B00%3A00"}
    assert msg["text"].startswith(
        ":red_circle: Task failed: flight_delay__ingest.ingest_features (logical date 2013-02-03")


def test_failure_without_exception_or_logical_date_still_renders():
    """A task failed from outside (e.g. marked failed) has no exception; an asset-triggered run no logical date.
    The DAG's Jinja environment is strict, so an undefined name would leave the raw template in the message."""
    context = failure_context(None)
    del context["exception"]
    context["logical_date"] = None
    alerts.failure_notifier()(context)
    msg = last_outbox()
    body = texts(msg["blocks"])
    assert "{{" not in msg["text"] and "{{" not in body
    assert "no exception recorded" in body and "*Logical date*\nnone" in body


def test_contract_breach_has_its_own_kind_and_header():
    from airflow.sdk.exceptions import AirflowFailException

    breach = ContractViolation("flight_delay.features", "DISTANCE", "min", "3 values below 1")
    try:  # as dags/ingest.py does: no retries, the breach kept as the cause
        raise AirflowFailException(str(breach)) from breach
    except AirflowFailException as exc:
        wrapped = exc
    alerts.failure_notifier()(failure_context(wrapped))
    msg = last_outbox()
    assert msg["kind"] == "contract_breach"
    assert msg["blocks"][0]["text"]["text"] == ":no_entry: Data contract breach: flight_delay__ingest"
    body = texts(msg["blocks"])
    assert "column 'DISTANCE' broke rule 'min': 3 values below 1" in body and "quarantined" in body


@pytest.mark.parametrize("exception, kind", [
    (ContractViolation("d", "c", "r", "x"), "contract_breach"),
    ("data contract breach in d: column 'c' broke rule 'r': x", "contract_breach"),
    (RuntimeError("boom"), "task_failure"),
    (None, "task_failure"),
    (UntrustedModel("untrusted model artifact: m v2 is serialized as 'pickle'"), "untrusted_model"),
    ("untrusted model artifact: m v2 is serialized as 'pickle'; the platform loads only skops models", "untrusted_model"),
])
def test_failure_kind(exception, kind):
    assert alerts.failure_kind({"exception": exception}) == kind


def test_redacting_logger_hides_the_token(caplog):
    token = "T000/B000/s3cr3t"
    sdk_log = alerts._RedactingLogger([token])
    with caplog.at_level(logging.DEBUG, logger=alerts.log.name):
        assert sdk_log.level == logging.DEBUG
        sdk_log.debug(f"Sending a request - url: https://hooks.slack.com/services/{token}, body: {{}}")
        sdk_log.info("Going to retry the same request: %s %s", "POST", f"https://hooks.slack.com/services/{token}")
    assert "s3cr3t" not in caplog.text
    assert caplog.text.count("https://hooks.slack.com/services/***") == 2
