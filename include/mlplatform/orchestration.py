"""What every DAG shares: default task policy, the Assets that connect the stages, and the days
a run must process. Imported at DAG-parse time, so it imports nothing heavy."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import Asset, get_current_context
from airflow.sdk.exceptions import AirflowFailException

from mlplatform.dates import checked_ds


TAGS = ["mlplatform"]


def default_args() -> dict:
    return {
        "owner": "mlops",
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(minutes=30),
        "on_failure_callback": [alert_on_failure],
    }


def alert_on_failure(context) -> None:
    """Failure callback: the Slack provider's notifier (or the outbox), imported only when a task fails."""
    from mlplatform.alerts import failure_notifier

    failure_notifier()(context)


# Name-only Assets: a URI scheme would make Airflow import every provider's asset handlers at parse time.
def features_asset(model: str) -> Asset:
    return Asset(name=f"{model}.features")


def predictions_asset(model: str) -> Asset:
    return Asset(name=f"{model}.predictions")


def retrain_request_asset(model: str) -> Asset:
    return Asset(name=f"{model}.retrain_request")


def logical_ds() -> str | None:
    logical_date = get_current_context().get("logical_date")
    return logical_date.strftime("%Y-%m-%d") if logical_date else None


def triggered_days(key: str = "days") -> list[str]:
    """Days named by the asset events that triggered this run (several may be batched into one run);
    for a manual run or ``dag.test``, the ``ds`` param or the logical date. A value that is not a
    day fails the task before any job runs: it would become a lake path."""
    context = get_current_context()
    days: set[str] = set()
    for events in context["triggering_asset_events"].values():
        for event in events:
            days.update(asset_event_days(event, key))
    if not days:
        explicit = context["params"].get("ds") or logical_ds()
        days = {_checked_day(explicit, "the ds param")} if explicit else set()
    return sorted(days)


def asset_event_days(event, key: str = "days") -> list[str]:
    """The list of days in ``event.extra[key]`` (none if absent), each checked."""
    value = (event.extra or {}).get(key, [])
    if not isinstance(value, list):
        raise AirflowFailException(f"{_describe(event)}: extra[{key!r}] must be a list of days, got {value!r}")
    return [_checked_day(day, f"{_describe(event)}: extra[{key!r}]") for day in value]


def asset_event_day(event, key: str) -> str:
    """The one day in ``event.extra[key]``, checked."""
    return _checked_day((event.extra or {}).get(key), f"{_describe(event)}: extra[{key!r}]")


def _describe(event) -> str:
    asset = getattr(getattr(event, "asset", None), "name", "?")
    source = f" from {event.source_dag_id}/{event.source_run_id}" if getattr(event, "source_dag_id", None) else ""
    return f"asset event of {asset}{source}"


def _checked_day(value, where: str) -> str:
    try:
        return checked_ds(value)
    except ValueError as exc:  # bad input: retrying cannot fix it
        raise AirflowFailException(f"{where}: {exc}") from None


def actor() -> str:
    """Who a run acts for, as recorded in the promotion log: the user who triggered it, else the run."""
    context = get_current_context()
    run = context["dag_run"]
    user = getattr(run, "triggering_user_name", None)
    return f"airflow-user:{user}" if user else f"airflow:{run.dag_id}/{run.run_id}"


def airflow_run(context=None) -> str:
    """This DAG run, as ``<dag_id>/<run_id>``: the same for every try of its tasks."""
    context = context or get_current_context()
    run = context["dag_run"]
    return f"{run.dag_id}/{run.run_id}"


@contextmanager
def fail_fast(*errors: type[BaseException]):
    """``errors`` fail the task at once, without retries: a retry cannot fix them (a stale decision, a
    compare-and-set conflict, bad data)."""
    try:
        yield
    except errors as exc:
        raise AirflowFailException(str(exc)) from exc
