"""Slack alerts through the Slack provider, with a local outbox when no webhook is configured.

Every alert is also appended to the outbox file when Slack is not configured, so a local user
sees exactly what would have been posted. The webhook itself lives only in the Airflow connection.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

from mlplatform.config import settings

log = logging.getLogger(__name__)


def _webhook_configured(conn_id: str) -> bool:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    try:
        conn = SlackWebhookHook.get_connection(conn_id)
    except Exception:  # the connection is simply not defined
        return False
    return bool(conn.password)


def _append_to_outbox(payload: dict) -> None:
    path = settings().outbox_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(payload, sort_keys=True, default=str) + "\n")


def send(kind: str, text: str, blocks: list | None = None, conn_id: str | None = None) -> str:
    """Post to Slack, or to the outbox when no webhook is configured. Returns where it went."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    conn_id = conn_id or settings().slack_conn_id
    if _webhook_configured(conn_id):
        SlackWebhookHook(slack_webhook_conn_id=conn_id).send(text=text, blocks=blocks)
        log.info("slack alert sent (%s): %s", kind, text)
        return "slack"
    _append_to_outbox({"kind": kind, "text": text, "blocks": blocks or [],
                       "at": datetime.now(timezone.utc).isoformat()})
    log.warning("slack not configured; alert written to outbox %s: %s", settings().outbox_path, text)
    return "outbox"


class AlertNotifier(SlackWebhookNotifier):
    """The provider's webhook notifier, falling back to the outbox when Slack is not configured."""

    def notify(self, context):
        if _webhook_configured(self.slack_webhook_conn_id):
            return super().notify(context)
        send(failure_kind(context), self.text, self.blocks, conn_id=self.slack_webhook_conn_id)


def failure_kind(context) -> str:
    return "contract_breach" if "data contract breach" in str(context.get("exception", "")) else "task_failure"


FAILURE_TEXT = (
    ":red_circle: Task failed: {{ dag.dag_id }}.{{ ti.task_id }} "
    "(logical date {{ logical_date or 'none' }}, try {{ ti.try_number }}). "
    "{{ exception }} Log: {{ ti.log_url }}"
)


def failure_notifier() -> AlertNotifier:
    return AlertNotifier(slack_webhook_conn_id=settings().slack_conn_id, text=FAILURE_TEXT)
