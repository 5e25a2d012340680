"""Slack alerts over real HTTP: a local server stands in for the incoming webhook, and the Slack
connection (through ``AIRFLOW_CONN_<ID>``) points at it. Each kind of alert is checked in the
payload the server received; task failures come from a real failing task run through ``dag.test()``.
The webhook token must not appear in any log line, in the captured output or in the outbox."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from mlplatform import alerts
from mlplatform.config import settings
from tests.unit.test_alerts import DRIFT_OUTCOME, GATE_OUTCOME

pytestmark = pytest.mark.integration

TOKEN = "T0TEST/B0TEST/s3cr3t-webhook-token-5d41402abc4b2a76"
SECRET = "s3cr3t-webhook-token"  # the part of the token that must never show up
CONN_ID = "slack_webhook_test"
AIRFLOW_URL = "http://airflow.test:8080"


class _Webhook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"ok" if self.server.status == 200 else b"invalid_blocks")

    def log_message(self, *args):  # http.server would print each request line, token included, to stderr
        pass


class WebhookServer(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Webhook)
        self.received: list[tuple[str, str, dict]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/services"

    def payloads(self) -> list[dict]:
        return [payload for _, _, payload in self.received]


def use_connection(monkeypatch, conn: dict) -> None:
    monkeypatch.setenv("MLOPS_SLACK_CONN_ID", CONN_ID)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def webhook(monkeypatch, tmp_path, caplog):
    """The stand-in webhook, the connection pointing at it, a fresh outbox, and every logger at DEBUG."""
    server = WebhookServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    use_connection(monkeypatch, {"conn_type": "slackwebhook", "host": server.url, "password": TOKEN})
    monkeypatch.setenv("MLOPS_OUTBOX", str(tmp_path / "outbox.jsonl"))
    monkeypatch.setenv("MLOPS_AIRFLOW_URL", AIRFLOW_URL)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):  # the Slack SDK would use them
        monkeypatch.delenv(var, raising=False)
    caplog.set_level(logging.DEBUG)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# Two failing tasks with the platform's failure callback: a crash, and a contract breach raised the way
# dags/ingest.py raises it. dag.test() runs only DAGs it finds in a bundle, so the file goes into one.
PROBE_DAG = """
from datetime import datetime

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

from mlplatform.contracts import ContractViolation
from mlplatform.orchestration import alert_on_failure

with DAG("slack_alert_probe", schedule=None, start_date=datetime(2013, 1, 1), catchup=False,
         default_args={"retries": 0, "on_failure_callback": [alert_on_failure]}) as dag:
    @task
    def crashes():
        raise RuntimeError("model file <missing> & unreadable")

    @task
    def breaches():
        breach = ContractViolation("flight_delay.features", "DISTANCE", "min", "3 values below 1")
        raise AirflowFailException(str(breach)) from breach

    crashes()
    breaches()
"""


def probe_dag(monkeypatch, tmp_path):
    bundle = tmp_path / "probe_bundle"
    bundle.mkdir()
    (bundle / "slack_alert_probe.py").write_text(PROBE_DAG)
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "slack-probe", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
         "kwargs": {"path": str(bundle)}}]))
    spec = importlib.util.spec_from_file_location("slack_alert_probe", bundle / "slack_alert_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def assert_token_nowhere(caplog, capfd) -> None:
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    outbox = settings().outbox_path.read_text() if settings().outbox_path.exists() else ""
    for where, text in {"log records": records, "log text": caplog.text, "stdout": out, "stderr": err,
                        "outbox": outbox}.items():
        assert SECRET not in text, f"webhook token leaked into {where}"


def header_of(payload: dict) -> str:
    return payload["blocks"][0]["text"]["text"]


def all_text(payload: dict) -> str:
    return json.dumps(payload["blocks"])


def test_alerts_post_block_kit_to_the_webhook(webhook, caplog, capfd):
    assert alerts.drift_alert("flight_delay", DRIFT_OUTCOME) == "slack"
    assert alerts.gate_alert("flight_delay", "7", GATE_OUTCOME, promoted=True, action="promote",
                             actor="airflow-user:admin", from_version="6") == "slack"
    rejected = {**GATE_OUTCOME, "gate": {**GATE_OUTCOME["gate"], "promote": False, "reason": "CI includes 0"}}
    assert alerts.gate_alert("flight_delay", "8", rejected, promoted=False, action="reject",
                             actor="airflow-user:admin", from_version="7") == "slack"
    assert alerts.rollback_alert("flight_delay", "7", "6", "airflow-user:admin", "bad latency") == "slack"

    assert [path for path, _, _ in webhook.received] == [f"/services/{TOKEN}"] * 4
    assert all(ctype.startswith("application/json") for _, ctype, _ in webhook.received)
    drift, promoted, rejection, rollback = webhook.payloads()

    assert header_of(drift) == ":rotating_light: Drift on flight_delay for 2013-02-03"
    assert drift["text"].startswith(":rotating_light: flight_delay on 2013-02-03: Retraining requested (drift)")
    fields = [f["text"] for block in drift["blocks"] for f in block.get("fields", [])]
    assert "*`DISTANCE`*\n0.8123" in fields and "*`DEP_HOUR`*\n0.3100" in fields
    assert "*Decision:* Retraining requested (reason `drift`)" in all_text(drift)
    assert f"{AIRFLOW_URL}/model-reports/flight_delay/2013-02-03/drift_report.html" in all_text(drift)

    assert header_of(promoted) == ":trophy: Promoted flight_delay v7"
    assert "+0.0123 (95% CI [+0.0041, +0.0209])" in all_text(promoted)
    assert "#/models/flight_delay/versions/7" in all_text(promoted)
    assert header_of(rejection) == ":no_entry: Rejected flight_delay v8"
    assert "*Gate refused:* CI includes 0" in all_text(rejection)
    assert header_of(rollback) == ":rewind: Rolled back flight_delay to v6"
    assert "*From*\\nv7" in all_text(rollback)

    assert not settings().outbox_path.exists()
    assert "slack alert sent (promotion) through connection slack_webhook_test" in caplog.text
    assert "/services/***" in caplog.text  # the SDK's debug line with the URL was logged, redacted
    assert_token_nowhere(caplog, capfd)


def test_failed_task_and_contract_breach_through_dag_test(webhook, monkeypatch, tmp_path, caplog, capfd, airflow_db):
    dag = probe_dag(monkeypatch, tmp_path)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", AIRFLOW_URL)  # what ti.log_url is built on
    run = dag.test(logical_date=datetime(2013, 2, 3, tzinfo=timezone.utc))
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"crashes": "failed", "breaches": "failed"}

    assert [path for path, _, _ in webhook.received] == [f"/services/{TOKEN}"] * 2
    by_task = {next(f["text"] for f in p["blocks"][1]["fields"] if f["text"].startswith("*Task*")): p
               for p in webhook.payloads()}
    failure, breach = by_task["*Task*\n`crashes`"], by_task["*Task*\n`breaches`"]

    assert header_of(failure) == ":red_circle: Task failed: slack_alert_probe"
    fields = [f["text"] for f in failure["blocks"][1]["fields"]]
    assert fields == ["*DAG*\n`slack_alert_probe`", "*Task*\n`crashes`",
                      "*Logical date*\n2013-02-03 00:00:00+00:00", "*Try*\n1"]
    assert "model file &lt;missing&gt; &amp; unreadable" in all_text(failure)
    buttons = {b["text"]["text"]: b["url"] for b in failure["blocks"][-1]["elements"]}
    run_url = f"{AIRFLOW_URL}/dags/slack_alert_probe/runs/{quote(run.run_id)}"
    assert buttons == {"Task log": f"{run_url}/tasks/crashes?try_number=1", "DAG run": run_url}
    assert failure["text"].startswith(":red_circle: Task failed: slack_alert_probe.crashes (logical date 2013-02-03")

    assert header_of(breach) == ":no_entry: Data contract breach: slack_alert_probe"
    assert "column 'DISTANCE' broke rule 'min': 3 values below 1" in all_text(breach)
    assert "quarantined" in all_text(breach)

    assert not settings().outbox_path.exists()
    assert_token_nowhere(caplog, capfd)


def test_a_refused_post_goes_to_the_outbox(webhook, caplog, capfd):
    webhook.status = 400  # what Slack answers to malformed blocks
    assert alerts.rollback_alert("flight_delay", "7", "6", "airflow-user:admin", "bad latency") == "outbox"
    assert len(webhook.received) == 1
    msg = json.loads(settings().outbox_path.read_text().splitlines()[-1])
    assert msg["kind"] == "rollback" and "Status Code: 400" in msg["error"]
    assert "could not be posted" in caplog.text
    assert_token_nowhere(caplog, capfd)


def test_an_unreachable_webhook_goes_to_the_outbox(webhook, monkeypatch, caplog, capfd):
    from mlplatform.devstack.stack import free_port

    dead = f"http://127.0.0.1:{free_port()}/services"  # nothing listens there: the SDK retries once
    use_connection(monkeypatch, {"conn_type": "slackwebhook", "host": dead, "password": TOKEN})
    assert alerts.drift_alert("flight_delay", DRIFT_OUTCOME) == "outbox"
    msg = json.loads(settings().outbox_path.read_text().splitlines()[-1])
    assert msg["kind"] == "drift" and "URLError" in msg["error"]
    assert f"Going to retry the same request: POST {dead}/***" in caplog.text  # logged at INFO, redacted
    assert_token_nowhere(caplog, capfd)


def test_without_a_token_alerts_go_to_the_outbox_and_nothing_is_posted(webhook, monkeypatch, caplog, capfd):
    use_connection(monkeypatch, {"conn_type": "slackwebhook", "host": webhook.url})  # as the local stack has it
    assert alerts.drift_alert("flight_delay", DRIFT_OUTCOME) == "outbox"
    assert alerts.gate_alert("flight_delay", "7", GATE_OUTCOME, promoted=True, action="promote",
                             actor="airflow-user:admin", from_version="6") == "outbox"
    assert webhook.received == []
    lines = [json.loads(line) for line in settings().outbox_path.read_text().splitlines()]
    assert [m["kind"] for m in lines] == ["drift", "promotion"]
    assert lines[0]["blocks"][0]["text"]["text"] == ":rotating_light: Drift on flight_delay for 2013-02-03"
    assert all(set(m) == {"kind", "text", "blocks", "at"} for m in lines)
    assert "slack not configured; alert written to outbox" in caplog.text


@pytest.fixture(scope="module")
def airflow_db():
    """A migrated metadata DB (this session's SQLite file) for ``dag.test()``; no servers needed."""
    from mlplatform.devstack.stack import prepare_airflow_db

    prepare_airflow_db({"AIRFLOW_HOME": os.environ["AIRFLOW_HOME"]})
