"""Slack alerts as Block Kit messages, through the Slack provider, with a local outbox when no webhook
is configured.

One public function per kind of alert builds the message (a plain-text fallback plus blocks with
links into the Airflow UI, the drift report and MLflow) and hands it to ``send``:

- ``failure_notifier()``: a failed task, a data-contract breach, or a refused model artifact (the tasks'
  failure callback);
- ``drift_alert``: the monitor's decision for a day, with the most drifted features;
- ``gate_alert``: a challenger promoted or rejected, with the gate's evidence;
- ``rollback_alert``: the champion moved back to an older version.

``send`` posts through the provider's ``SlackWebhookHook`` when the connection has a token. With no
token, or when the post fails, the message is appended to the outbox file instead, so a local user
sees exactly what would have been posted. The webhook token lives only in the Airflow connection
and never reaches a log line: the Slack SDK logs the full webhook URL (at DEBUG, and at INFO when it
retries), so the hook is given a logger that redacts the token first.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from urllib.parse import quote

from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

from mlplatform.config import settings

log = logging.getLogger(__name__)

TASK_FAILURE, CONTRACT_BREACH, UNTRUSTED_MODEL = "task_failure", "contract_breach", "untrusted_model"
REDACTED = "***"


# -- Block Kit -------------------------------------------------------------------------------------
# Plain dicts, see https://api.slack.com/reference/block-kit/blocks. Slack's limits: a header holds
# 150 characters, a section's text 3000, a section at most 10 fields of 2000, a button's text 75.

def esc(value) -> str:
    """Escape the three characters that mrkdwn reserves for links and mentions."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, 150), "emoji": True}}


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, 3000)}}


def fields(values: dict[str, str]) -> dict:
    """A section of labelled values (Slack lays them out in two columns). Values are mrkdwn."""
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", 2000)}
                                          for label, value in list(values.items())[:10]]}


def context(*texts: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(t, 3000)} for t in texts[:10]]}


def buttons(links: dict[str, str]) -> dict:
    """One link button per label (an actions block): opening a URL needs no Slack app."""
    return {"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": _clip(label, 75)}, "url": url}
        for label, url in links.items()]}


# -- links -----------------------------------------------------------------------------------------
def dag_url(dag_id: str) -> str:
    return f"{settings().airflow_url}/dags/{quote(dag_id)}"


def drift_report_url(model: str, ds: str) -> str:
    """The drift report as served by the Airflow UI plugin page."""
    return f"{settings().airflow_url}/model-reports/{quote(model)}/{ds}/drift_report.html"


def model_version_url(model: str, version: str) -> str:
    return f"{settings().mlflow_tracking_uri}/#/models/{quote(model)}/versions/{version}"


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


# -- alerts ------------------------------------------------------------------------------------------
_DRIFT_DECISIONS = {"retrain": (":rotating_light:", "Retraining requested"),
                    "alert": (":warning:", "No retraining yet, alert only"),
                    "none": (":white_check_mark:", "No action")}


def drift_alert(model: str, outcome: dict) -> str:
    """The monitor's decision for one day (``outcome`` as ``monitoring.monitor`` returns it), with the most
    drifted features and their effect sizes. Returns where the alert went ("slack" or "outbox")."""
    ds, action, reason = outcome["ds"], outcome["action"], outcome["reason"]
    emoji, decision = _DRIFT_DECISIONS.get(action, (":grey_question:", action))
    top = [(str(column), float(score)) for column, score in outcome["top_drifted"]]
    report = drift_report_url(model, ds)
    blocks = [
        header(f"{emoji} Drift on {model} for {ds}"),
        section(f"*Decision:* {decision} (reason `{esc(reason)}`)\n{esc(outcome['message'])}"),
        fields({"Drifted columns": _share(outcome["drift_share"]),
                "Effective drift share": _share(outcome["effective_share"])}),
        section("*Top drifted features* (effect size)" if top else "*Top drifted features:* none"),
        *([fields({f"`{esc(column)}`": f"{score:.4f}" for column, score in top})] if top else []),
        context(f"Report in the lake: `{esc(outcome['report_uri'])}`"),
        buttons({"Drift report": report, "Monitor DAG": dag_url(f"{model}__monitor")}),
    ]
    top_text = ", ".join(f"{column} ({score:.4f})" for column, score in top) or "none"
    text = (f"{emoji} {model} on {ds}: {decision} ({reason}). {outcome['message']}. "
            f"Top drifted (effect size): {top_text}. Report: {report}")
    return send("drift", text, blocks)


def gate_alert(model: str, version: str, outcome: dict, promoted: bool, action: str, actor: str,
               from_version: str | None) -> str:
    """A challenger promoted or rejected, with the gate's evidence (``outcome`` as
    ``training.train_challenger`` returns it). ``action`` is ``promote``, ``manual_promote`` or ``reject``;
    ``from_version`` is the champion before the move (for a rejection: the champion that stays)."""
    gate = outcome["gate"]
    low, high = gate["ci95"]
    gain = f"{gate['auc_gain']:+.4f} (95% CI [{low:+.4f}, {high:+.4f}])"
    bar = ("Baseline AUC (prior rate)", "0.5000") if gate["champion_auc"] is None else \
        (f"Champion AUC ({_v(from_version)})", f"{gate['champion_auc']:.4f}")
    if promoted:
        title = f":trophy: Promoted {model} v{version}"
        what = f"`{esc(action)}` by {esc(actor)}: the champion moved from {_v(from_version)} to v{version}."
        if action == "manual_promote":
            what += " Forced by hand although the gate refused."
    else:
        title = f":no_entry: Rejected {model} v{version}"
        what = f"The champion stays {_v(from_version)}; v{version} remains the challenger."
    verdict = "passed" if gate["promote"] else "refused"
    blocks = [
        header(title),
        section(f"{what}\n*Gate {verdict}:* {esc(gate['reason'])}"),
        fields({"Challenger AUC": f"{gate['challenger_auc']:.4f}", bar[0]: bar[1], "AUC gain": gain,
                "Holdout rows": f"{gate['holdout_rows']:,}", "Trained to": esc(outcome["cutoff_ds"]),
                "Trigger": esc(outcome["reason"])}),
        context(f"MLflow run `{esc(outcome['run_id'])}`"),
        buttons({f"MLflow: {model} v{version}": model_version_url(model, version),
                 "Train DAG": dag_url(f"{model}__train")}),
    ]
    text = (f"{title} (gate {verdict}: {gate['reason']}). Holdout AUC {gate['challenger_auc']:.4f} vs "
            f"{bar[1]} ({bar[0]}), gain {gain}.")
    return send("promotion" if promoted else "rejection", text, blocks)


def rollback_alert(model: str, from_version: str | None, to_version: str, actor: str, reason: str) -> str:
    """The champion moved back from ``from_version`` to ``to_version``."""
    title = f":rewind: Rolled back {model} to v{to_version}"
    blocks = [
        header(title),
        section(f"*Reason:* {esc(reason)}"),
        fields({"From": _v(from_version), "To": f"v{to_version}", "By": esc(actor)}),
        buttons({f"MLflow: {model} v{to_version}": model_version_url(model, to_version),
                 "Rollback DAG": dag_url(f"{model}__rollback")}),
    ]
    text = f"{title} (champion was {_v(from_version)}) by {actor}: {reason}"
    return send("rollback", text, blocks)


# -- task failures ------------------------------------------------------------------------------
# Jinja, rendered by Airflow against the failed task's context when the notifier is called. A DAG's templates
# fail on an undefined name, and not every failure has an exception or a logical date in its context (a
# task failed from outside, an asset-triggered run), hence the defaults.
_DAG, _TASK, _TRY, _LOG = "{{ dag.dag_id }}", "{{ ti.task_id }}", "{{ ti.try_number }}", "{{ ti.log_url }}"
_LOGICAL_DATE = "{{ logical_date | default('none', true) }}"
_EXCEPTION = "exception | default('no exception recorded', true) | string"
_ERROR = ("{{ " + _EXCEPTION + " | replace('&', '&amp;') | replace('<', '&lt;') | replace('>', '&gt;')"
          " | truncate(2800, true, '…', 0) }}")
_TITLES = {TASK_FAILURE: ":red_circle: Task failed", CONTRACT_BREACH: ":no_entry: Data contract breach",
           UNTRUSTED_MODEL: ":no_entry: Untrusted model artifact refused"}
_HINTS = {TASK_FAILURE: "The task failed after its last try.",
          CONTRACT_BREACH: "The batch is quarantined and the day's partition is unchanged; retrying cannot "
                           "fix bad data. Fix the source rows, then clear the task to re-run the day.",
          UNTRUSTED_MODEL: "The model was not loaded and nothing was written for the day: only skops models "
                           "holding the platform's allowed types are. Point champion at a trusted version (the "
                           "rollback DAG), then clear the task to re-run the day."}


def failure_kind(context) -> str:
    """``contract_breach`` when the task failed on a data contract, ``untrusted_model`` when it refused a
    model artifact (the DAGs re-raise both as ``AirflowFailException``, keeping them as the cause), else
    ``task_failure``."""
    from mlplatform.contracts import ContractViolation
    from mlplatform.registry import UntrustedModel

    error = context.get("exception")
    for kind, cls, text in ((CONTRACT_BREACH, ContractViolation, "data contract breach"),
                            (UNTRUSTED_MODEL, UntrustedModel, "untrusted model artifact")):
        if isinstance(error, cls) or isinstance(getattr(error, "__cause__", None), cls) or text in str(error or ""):
            return kind
    return TASK_FAILURE


def failure_text(kind: str) -> str:
    return (f"{_TITLES[kind]}: {_DAG}.{_TASK} (logical date {_LOGICAL_DATE}, try {_TRY}). "
            "{{ " + _EXCEPTION + " | truncate(1000, true, '…', 0) }} Log: " + _LOG)


def failure_blocks(kind: str) -> list[dict]:
    run = f"{settings().airflow_url}/dags/{_DAG}/runs/{{{{ run_id | urlencode }}}}"
    return [
        header(f"{_TITLES[kind]}: " + "{{ dag.dag_id | truncate(100, true, '…', 0) }}"),
        fields({"DAG": f"`{_DAG}`", "Task": f"`{_TASK}`", "Logical date": _LOGICAL_DATE, "Try": _TRY}),
        section(f"```{_ERROR}```"),
        context(_HINTS[kind]),
        buttons({"Task log": _LOG, "DAG run": run}),
    ]


class AlertNotifier(SlackWebhookNotifier):
    """The provider's webhook notifier, as the tasks' failure callback.

    Airflow renders ``text`` and ``blocks`` (the notifier's template fields) with Jinja against the
    task's context. Left out, they become the message for the failure's kind, chosen just before
    rendering. Delivery goes through ``send``: the outbox when no webhook is configured, and a
    redacting logger for the Slack SDK either way (the provider's own ``notify`` logs the URL)."""

    def __init__(self, *, text: str | None = None, blocks: list | None = None, **kwargs):
        kwargs.setdefault("slack_webhook_conn_id", settings().slack_conn_id)
        super().__init__(text=text, blocks=blocks, **kwargs)

    def render_template_fields(self, context, jinja_env=None) -> None:
        kind = failure_kind(context)
        self.text = failure_text(kind) if self.text is None else self.text
        self.blocks = failure_blocks(kind) if self.blocks is None else self.blocks
        super().render_template_fields(context, jinja_env)

    def notify(self, context) -> None:
        send(failure_kind(context), self.text or "", self.blocks, conn_id=self.slack_webhook_conn_id)


def failure_notifier() -> AlertNotifier:
    return AlertNotifier(slack_webhook_conn_id=settings().slack_conn_id)


# -- delivery ------------------------------------------------------------------------------------
def redact(text: str, secrets: list[str]) -> str:
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class _RedactingLogger:
    """The logger handed to the Slack SDK, which puts the full webhook URL into its log lines: each
    line has the token replaced before it reaches this module's logger."""

    def __init__(self, secrets: list[str]):
        self._secrets = secrets

    @property
    def level(self) -> int:  # the SDK formats its debug lines only when this is DEBUG or lower
        return log.getEffectiveLevel()

    def _emit(self, level: int, msg, args) -> None:
        if log.isEnabledFor(level):
            log.log(level, "slack_sdk: %s", redact(str(msg) % args if args else str(msg), self._secrets))

    def debug(self, msg, *args, **_):
        self._emit(logging.DEBUG, msg, args)

    def info(self, msg, *args, **_):
        self._emit(logging.INFO, msg, args)

    def warning(self, msg, *args, **_):
        self._emit(logging.WARNING, msg, args)

    def error(self, msg, *args, **_):
        self._emit(logging.ERROR, msg, args)

    def exception(self, msg, *args, **_):  # no traceback: exception texts may carry the URL
        self._emit(logging.ERROR, msg, args)


def _webhook_token(conn_id: str) -> str | None:
    """The connection's webhook token (or full webhook URL), None when Slack is not configured.
    Fetched through the hook, so Airflow's secrets masker learns the password as usual."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    try:
        conn = SlackWebhookHook.get_connection(conn_id)
    except Exception:  # the connection is simply not defined
        return None
    return (conn.password or "").strip() or None


def _append_to_outbox(payload: dict) -> None:
    path = settings().outbox_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(payload, sort_keys=True, default=str) + "\n")


def send(kind: str, text: str, blocks: list | None = None, conn_id: str | None = None) -> str:
    """Post to Slack, or to the outbox when no webhook is configured or the post fails (an alert
    never fails the task that sends it). Returns where it went: "slack" or "outbox"."""
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    conn_id = conn_id or settings().slack_conn_id
    token = _webhook_token(conn_id)
    error = None
    if token is not None:
        secrets = [token.strip("/")]  # the webhook URL contains it (the hook trims a trailing slash)
        try:
            SlackWebhookHook(slack_webhook_conn_id=conn_id, logger=_RedactingLogger(secrets)).send(
                text=text, blocks=blocks)
            log.info("slack alert sent (%s) through connection %s: %s", kind, conn_id, text)
            return "slack"
        except Exception as exc:  # the message may quote the URL; the traceback is left out for that reason
            error = redact(f"{type(exc).__name__}: {exc}", secrets)
            log.warning("slack alert (%s) could not be posted through connection %s (%s); writing it to the "
                        "outbox", kind, conn_id, error)
    _append_to_outbox({"kind": kind, "text": text, "blocks": blocks or [],
                       "at": datetime.now(timezone.utc).isoformat(), **({"error": error} if error else {})})
    if error is None:
        log.warning("slack not configured; alert written to outbox %s: %s", settings().outbox_path, text)
    return "outbox"
