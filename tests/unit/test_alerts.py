import json

from mlplatform import alerts
from mlplatform.config import settings


def test_without_webhook_alerts_go_to_outbox():
    where = alerts.send("drift", "drift on flight_delay", [{"type": "section"}])
    assert where == "outbox"
    last = json.loads(settings().outbox_path.read_text().splitlines()[-1])
    assert last["kind"] == "drift" and last["text"] == "drift on flight_delay"


def test_failure_notifier_falls_back_to_outbox():
    notifier = alerts.AlertNotifier(slack_webhook_conn_id="slack_alerts", text="task x failed")
    notifier.notify({})
    last = json.loads(settings().outbox_path.read_text().splitlines()[-1])
    assert last == {**last, "kind": "task_failure", "text": "task x failed"}
