"""Replay a window of days through the real Airflow scheduler, with progress read from Airflow's own records.

    python -m mlplatform.devstack.replay --from 2013-02-01 --to 2013-02-28 [--model flight_delay]
                                         [--history-from 2013-01-01]
    make replay FROM=2013-02-01 TO=2013-02-28 [MODEL=flight_delay] [HISTORY_FROM=2013-01-01]

For each model, against the running stack (``make up``):
1. history: backfill ingest from HISTORY_FROM to the day before FROM;
2. the first training, with its cut-off at the last history day, the newest labelled day in the lake
   (a cut-off D needs the outcomes known by D, which D's ingest brings);
3. replay: backfill ingest from FROM to TO. Each day's features trigger score, its predictions trigger monitor,
   and the monitor asks for the retrainings the model's drift policy wants.

While a phase runs it prints how many days have finished their chain (days done / total, days per minute, ETA).
A day is done when the last run its chain needs has finished, as the REST API reports the runs and the asset
events that created them; the clock only turns that count into a rate. At the end it prints a summary: each
DAG's runs of this replay by outcome (a run whose decisive task skipped counts as skipped), the retrainings,
the champion moves, wall time and model-days per hour. The stack keeps running; ``make down`` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests

from mlplatform.dates import checked_ds, day_range, shift
from mlplatform.devstack.airflow_api import FINISHED, AirflowApi

STAGES = ("ingest", "score", "monitor", "train")
# The task each stage's runs exist for: when it skipped (score: no champion yet), the run did nothing,
# although Airflow marks the run a success.
DECISIVE_TASKS = {"ingest": "ingest_features", "score": "score_days", "monitor": "drift_reports",
                  "train": "train_challenger"}
OUTCOME_ORDER = ("success", "skipped", "failed", "running", "queued")
CHAIN = ("ingest", "score", "monitor")  # the stages each day goes through
SUCCESS, FAILED = "success", "failed"
POLL_S = 10
HEARTBEAT_S = 60  # a progress line at least this often, even when no day finished
IDLE_GRACE_S = 60  # Airflow idle this long with days still pending: their chains will not finish by themselves
MAX_SERVER_ERRORS = 30  # polls in a row that Airflow answers with a server error before the driver gives up


@dataclass(frozen=True)
class Window:
    """History days are only ingested; replay days run ingest -> score -> monitor. All days inclusive."""
    history_start: str
    replay_start: str
    replay_end: str

    def __post_init__(self) -> None:
        for name in ("history_start", "replay_start", "replay_end"):
            try:
                checked_ds(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name.replace('_', ' ')}: {exc}") from None
        if self.history_start >= self.replay_start:
            raise ValueError(f"the history ({self.history_start}) must start before the replay ({self.replay_start}):"
                             " the first champion is trained on it")
        if self.replay_end < self.replay_start:
            raise ValueError(f"the replay ends ({self.replay_end}) before it starts ({self.replay_start})")

    @property
    def history_end(self) -> str:
        return shift(self.replay_start, -1)

    def history_days(self) -> list[str]:
        return day_range(self.history_start, self.history_end)

    def replay_days(self) -> list[str]:
        return day_range(self.replay_start, self.replay_end)


# -- run outcomes ---------------------------------------------------------------------------------------------
def run_outcome(run: dict, task_states: dict[str, str | None], decisive_task: str) -> str:
    """How one DAG run ended: its own state, except that a successful run whose decisive task skipped
    is "skipped". ``task_states``: the run's task instances, task id -> state."""
    if run["state"] == "success" and task_states.get(decisive_task) == "skipped":
        return "skipped"
    return run["state"]


def run_outcomes(runs: list[dict], task_instances: list[dict], decisive_task: str) -> Counter:
    """Outcomes of DAG runs, counted from the runs and their task instances as the REST API returns them
    (``dag_run_id`` and ``state`` in both; ``task_id`` in a task instance)."""
    states: dict[str, dict[str, str | None]] = {}
    for ti in task_instances:
        states.setdefault(ti["dag_run_id"], {})[ti["task_id"]] = ti["state"]
    return Counter(run_outcome(r, states.get(r["dag_run_id"], {}), decisive_task) for r in runs)


def outcomes_text(outcomes: Counter) -> str:
    """``7 success, 30 skipped``: known outcomes in a fixed order, then any other."""
    order = [o for o in OUTCOME_ORDER if outcomes[o]] + sorted(o for o in outcomes if o not in OUTCOME_ORDER)
    return ", ".join(f"{outcomes[o]} {o}" for o in order) or "none"


def runs_line(stage: str, outcomes: Counter) -> str:
    """``  score    runs: 7 success, 30 skipped``."""
    return f"  {stage:8} runs: {outcomes_text(outcomes)}"


# -- progress: how far each day got ---------------------------------------------------------------------------
def day_outcomes(days: Iterable[str], ingest_runs: list[dict], feature_events: list[dict],
                 prediction_events: list[dict]) -> dict[str, str]:
    """Each day's chain as Airflow records it: the stage (``ingest``, ``score``, ``monitor``) whose runs the day
    still waits for, until the last run the chain needs has finished; then ``failed`` if a run of it failed, else
    ``success``.

    ``ingest_runs``: the ingest DAG's runs (GET /dags/<model>__ingest/dagRuns); the day's run is the one whose
    logical date is the day. ``feature_events`` and ``prediction_events``: the asset events published by the
    ingest and the score DAG (GET /assets/events?source_dag_id=...), each naming its days in ``extra["days"]`` and
    the runs it created in ``created_dagruns``. The chain goes from the day's ingest run to the score runs created
    by its events naming the day, then to the monitor runs created by those runs' events naming the day. It ends
    early where a run published nothing for the day: a failed run, or a score run that skipped (no champion yet).
    An event that has not created its run yet keeps the day waiting for that stage."""
    ingest_by_day = {r["logical_date"][:10]: r for r in ingest_runs if r.get("logical_date")}
    return {ds: _day_outcome(ds, ingest_by_day.get(ds), feature_events, prediction_events) for ds in days}


def _day_outcome(ds: str, ingest_run: dict | None, feature_events: list[dict], prediction_events: list[dict]) -> str:
    runs, failed = [ingest_run] if ingest_run else [], False
    for stage, published in zip(CHAIN, (feature_events, prediction_events, None)):
        if not runs or any(r["state"] not in FINISHED for r in runs):
            return stage
        failed = failed or any(r["state"] == FAILED for r in runs)
        run_ids = {_run_id(r) for r in runs}
        naming = [e for e in published or [] if e.get("source_run_id") in run_ids and ds in _event_days(e)]
        if not naming:
            break
        runs = [r for e in naming for r in e.get("created_dagruns") or []]
    return FAILED if failed else SUCCESS


def _run_id(run: dict) -> str:
    """A run's id: ``dag_run_id`` in the runs endpoint, ``run_id`` in an asset event's ``created_dagruns``."""
    return run.get("dag_run_id") or run["run_id"]


def _event_days(event: dict) -> list:
    days = (event.get("extra") or {}).get("days")
    return days if isinstance(days, list) else []


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    failed: int
    elapsed_s: float
    waiting: dict[str, int] = field(default_factory=dict)  # stage -> days waiting for its runs

    @classmethod
    def of(cls, outcomes: dict[str, str], elapsed_s: float) -> Progress:
        counts = Counter(outcomes.values())
        return cls(done=counts[SUCCESS] + counts[FAILED], total=len(outcomes), failed=counts[FAILED],
                   elapsed_s=elapsed_s, waiting={stage: counts[stage] for stage in CHAIN if counts[stage]})

    @property
    def days_per_minute(self) -> float | None:
        """Days done per minute since the phase started; None before the first day is done."""
        if not self.done or self.elapsed_s <= 0:
            return None
        return self.done / (self.elapsed_s / 60)

    @property
    def eta_s(self) -> float | None:
        """Seconds until the last day is done at the rate so far; None while there is no rate yet."""
        rate = self.days_per_minute
        return None if rate is None else (self.total - self.done) / rate * 60


def progress_line(label: str, progress: Progress) -> str:
    """``flight_delay replay: 3/7 days done (1 failed), 1.5 days/min, ETA 2m40s; waiting for score 2, monitor 2``."""
    failed = f" ({progress.failed} failed)" if progress.failed else ""
    rate = progress.days_per_minute
    pace = "no day done yet" if rate is None else f"{rate:.1f} days/min"
    eta = "done" if progress.done == progress.total else (
        f"ETA {duration_text(progress.eta_s)}" if progress.eta_s is not None else "ETA unknown")
    waiting = ", ".join(f"{stage} {n}" for stage, n in progress.waiting.items())
    return f"{label}: {progress.done}/{progress.total} days done{failed}, {pace}, {eta}" + (
        f"; waiting for {waiting}" if waiting else "")


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# -- summary --------------------------------------------------------------------------------------------------
def chains_line(outcomes: dict[str, str], listed: int = 10) -> str:
    """How far the replay window's days got, read again once Airflow is idle: a day still waiting for a stage
    then will not get there by itself (an asset event that created no run, say)."""
    failed = [ds for ds, outcome in outcomes.items() if outcome == FAILED]
    waiting = [f"{ds} (waiting for {outcome})" for ds, outcome in outcomes.items() if outcome in CHAIN]
    line = f"  replayed days: {len(outcomes) - len(waiting)} of {len(outcomes)} done"
    if failed:
        line += f", {len(failed)} of them failed ({_listed(failed, listed)})"
    return line + (f"; not done: {_listed(waiting, listed)}" if waiting else "")


def _listed(items: list[str], most: int) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")


def retraining_line(train_runs: list[dict], train_task_instances: list[dict], requests: list[dict]) -> str:
    """The train runs the monitor's retrain requests created (``run_type`` asset_triggered) by outcome, and the
    requests (the retrain_request asset events of the monitor DAG) by reason."""
    retrains = [r for r in train_runs if r.get("run_type") == "asset_triggered"]
    reasons = Counter(str((e.get("extra") or {}).get("reason", "unknown")) for e in requests)
    if not retrains and not requests:
        return "  retrainings: none (no retrain request)"
    asked = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
    outcomes = outcomes_text(run_outcomes(retrains, train_task_instances, DECISIVE_TASKS["train"]))
    return (f"  retrainings: {len(retrains)} runs ({outcomes}) on {len(requests)} retrain requests"
            + (f" ({asked})" if asked else ""))


def champion_moves_line(entries: list[dict]) -> str:
    """The promotion log's entries, oldest first: ``champion moves: 2 (promote none -> 1, promote 1 -> 3)``."""
    if not entries:
        return "  champion moves: none"
    moves = ", ".join(f"{e['action']} {e.get('from_version') or 'none'} -> {e.get('to_version') or 'none'}"
                      for e in entries)
    return f"  champion moves: {len(entries)} ({moves})"


@dataclass
class ModelReplay:
    """One model's replay: the days each backfill ran (a day that already had a successful ingest run is not run
    again) and the wall time of each phase, in seconds."""
    history_days: list[str] = field(default_factory=list)
    replay_days: list[str] = field(default_factory=list)
    history_s: float = 0.0
    training_s: float = 0.0
    replay_s: float = 0.0


@dataclass
class ReplayRun:
    """What the summary needs beside Airflow's records: the window, when the replay started, and what each model's
    replay ran and how long it took."""
    window: Window
    models: list[str]
    started_at: datetime
    replays: dict[str, ModelReplay] = field(default_factory=dict)
    wall_s: float = 0.0


def throughput_lines(run: ReplayRun) -> list[str]:
    """Wall time by phase and model-days per hour (a model-day: one day of one model that this replay ran):
    replayed days (ingest -> score -> monitor) over the replay phase's wall time, retrainings included, and all
    days run over the whole wall time, history and training included."""
    replays = run.replays.values()
    history_s, training_s, replay_s = (sum(getattr(r, name) for r in replays)
                                       for name in ("history_s", "training_s", "replay_s"))
    replayed = sum(len(r.replay_days) for r in replays)
    in_all = replayed + sum(len(r.history_days) for r in replays)
    lines = [f"  wall time {duration_text(run.wall_s)}: history {duration_text(history_s)}, "
             f"first training {duration_text(training_s)}, replay {duration_text(replay_s)}"]
    if replayed and replay_s > 0:
        lines.append(f"  {replayed} model-days replayed: {replayed / replay_s * 3600:.0f} model-days per hour")
    else:
        lines.append("  no day replayed: every day of the window already had a successful ingest run")
    if in_all and run.wall_s > 0:
        lines.append(f"  {in_all} model-days run in all (history included): "
                     f"{in_all / run.wall_s * 3600:.0f} per hour of wall time")
    return lines


def header_line(run: ReplayRun) -> str:
    w = run.window
    models = ", ".join(run.models)
    return (f"== replay {w.replay_start} .. {w.replay_end} after history {w.history_start} .. {w.history_end}, "
            f"model{'s' if len(run.models) > 1 else ''} {models} ==")


def model_summary(api: AirflowApi, model: str, started_at: datetime, window: Window) -> list[str]:
    """Each DAG's runs of this replay by outcome, how far each replayed day got, the retrainings, the champion
    moves, the model versions, the drift alerts and where the newest report is."""
    from mlplatform import promotion
    from mlplatform.lake import default_lake

    since = _api_time(started_at)
    lines = [f"== {model} =="]
    train = ([], [])
    for stage in STAGES:
        dag_id = f"{model}__{stage}"
        runs, tis = api.runs(dag_id, start_date_gte=since), api.task_instances(dag_id, start_date_gte=since)
        lines.append(runs_line(stage, run_outcomes(runs, tis, DECISIVE_TASKS[stage])))
        if stage == "train":
            train = (runs, tis)
    lines.append(chains_line(read_day_outcomes(api, model, window.replay_days(), since=None)))
    lines.append(retraining_line(*train, api.asset_events(f"{model}__monitor", timestamp_gte=since)))
    lake = default_lake()
    lines.append(champion_moves_line([e for e in promotion.entries(lake, model)
                                      if datetime.fromisoformat(e["at"]) >= started_at]))
    lines += registry_lines(model) + alert_lines(model) + report_lines(lake, model)
    return lines


def registry_lines(model: str) -> list[str]:
    from mlflow import MlflowClient

    from mlplatform.config import settings
    from mlplatform.registry import CHAMPION, version_by_alias

    client = MlflowClient(settings().mlflow_tracking_uri)
    numbers = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
    lines = [f"  model version {v.version}: aliases={v.aliases} trained_to={v.tags.get('cutoff_ds', '?')} "
             f"reason={v.tags.get('trigger_reason', '?')}: {v.tags.get('promotion_decision', '')}"
             for v in (client.get_model_version(model, str(n)) for n in numbers)]
    champion = version_by_alias(client, model, CHAMPION)
    return [*lines, f"  champion: version {champion.version if champion else 'none'}"]


def alert_lines(model: str) -> list[str]:
    from mlplatform.config import settings

    outbox = settings().outbox_path
    alerts = [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []
    drift = [a for a in alerts if a["kind"] == "drift" and model in a["text"]]
    return [f"  drift alerts: {len(drift)}" + "".join(f"\n    - {a['text'][:160]}" for a in drift[-3:])]


def report_lines(lake, model: str) -> list[str]:
    """Where the newest drift report is: its lake path and its URL on the Airflow UI's Model reports page."""
    from mlplatform.alerts import drift_report_url
    from mlplatform.lake import REPORTS_AREA

    def report(ds: str) -> str:
        return f"{REPORTS_AREA}/{model}/ds={ds}/drift_report.html"

    days = [ds for ds in lake.days(REPORTS_AREA, model) if lake.exists(report(ds))]
    if not days:
        return ["  drift reports: none yet"]
    return [f"  drift reports: {len(days)} days; the latest ({days[-1]}):",
            f"    in the lake: {lake.uri(report(days[-1]))}",
            f"    served at:   {drift_report_url(model, days[-1])}"]


def summary(api: AirflowApi, run: ReplayRun) -> str:
    lines = [header_line(run), *throughput_lines(run)]
    for model in run.models:
        lines += model_summary(api, model, run.started_at, run.window)
    return "\n".join(lines)


# -- the driver -----------------------------------------------------------------------------------------------
def dag_ids(model: str) -> list[str]:
    return [f"{model}__{stage}" for stage in STAGES]


def _api_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def read_day_outcomes(api: AirflowApi, model: str, days: list[str], since: datetime | None) -> dict[str, str]:
    """``day_outcomes`` from Airflow; ``since``: read only the asset events published since then (None: all)."""
    published = {"timestamp_gte": _api_time(since)} if since else {}
    return day_outcomes(days, api.runs(f"{model}__ingest", **_logical_dates(days[0], days[-1])),
                        api.asset_events(f"{model}__ingest", **published),
                        api.asset_events(f"{model}__score", **published))


def wait_for_days(api: AirflowApi, model: str, days: list[str], since: datetime, label: str,
                  tag: str) -> dict[str, str]:
    """Poll Airflow until every day's chain has finished, printing progress whenever a day finishes (and at least
    every HEARTBEAT_S). ``since``: when the phase started; older asset events belong to earlier runs. If Airflow
    stays idle while days are pending, say which and stop waiting."""
    last_done, last_print, idle_since, server_errors = -1, 0.0, None, 0
    while True:
        try:
            outcomes = read_day_outcomes(api, model, days, since)
            server_errors = 0
        except requests.HTTPError as exc:  # the asset events endpoint's 500 (see AirflowApi.asset_events)
            server_errors += 1
            if exc.response is None or exc.response.status_code < 500 or server_errors > MAX_SERVER_ERRORS:
                raise
            print(f"[{tag}] {label}: Airflow did not answer ({exc}); asking again in {POLL_S}s", flush=True)
            time.sleep(POLL_S)
            continue
        now = time.monotonic()
        progress = Progress.of(outcomes, (datetime.now(timezone.utc) - since).total_seconds())
        if progress.done != last_done or now - last_print >= HEARTBEAT_S:
            print(f"[{tag}] {progress_line(label, progress)}", flush=True)
            last_done, last_print = progress.done, now
        if progress.done == progress.total:
            return outcomes
        idle_since = (idle_since or now) if not api.busy(dag_ids(model)) else None
        if idle_since is not None and now - idle_since >= IDLE_GRACE_S:
            pending = [ds for ds, outcome in outcomes.items() if outcome in CHAIN]
            print(f"[{tag}] {label}: Airflow has been idle for {IDLE_GRACE_S}s with {len(pending)} days unfinished "
                  f"({pending[0]} .. {pending[-1]}); not waiting for them", flush=True)
            return outcomes
        time.sleep(POLL_S)


def run_days(api: AirflowApi, model: str, first: str, last: str, label: str, tag: str) -> list[str]:
    """Backfill ingest over the days from ``first`` to ``last`` that have no successful run yet (a day whose run
    failed runs again) and wait for their chains, and for those of days whose ingest run is still in flight
    (from an interrupted replay); returns the days waited for. A day with a successful run is left alone, and no
    backfill is created if none would create a run: such a backfill blocks the next one for two minutes."""
    since = datetime.now(timezone.utc)
    in_flight = {r["logical_date"][:10]: r for r in api.runs(f"{model}__ingest", **_logical_dates(first, last))
                 if r["state"] not in FINISHED}
    to_run = api.backfill_days(f"{model}__ingest", first, last)
    days, total = sorted(set(to_run) | set(in_flight)), len(day_range(first, last))
    if len(days) < total:
        print(f"[{tag}] {label}: {total - len(days)} of {total} days already have a successful ingest run"
              + (f"; running the other {len(days)}" if days else ""), flush=True)
    if in_flight:
        print(f"[{tag}] {label}: {len(in_flight)} days have ingest runs in flight from before; waiting for them too",
              flush=True)
        since = min([since, *(datetime.fromisoformat(r["queued_at"].replace("Z", "+00:00"))
                              for r in in_flight.values() if r.get("queued_at"))])
    if to_run:
        api.backfill(f"{model}__ingest", first, last)
    if days:
        wait_for_days(api, model, days, since, label, tag)
    return days


def _logical_dates(first: str, last: str) -> dict[str, str]:
    return {"logical_date_gte": f"{first}T00:00:00Z", "logical_date_lte": f"{last}T00:00:00Z"}


def replay_model(api: AirflowApi, model: str, window: Window, tag: str) -> ModelReplay:
    dags, result = dag_ids(model), ModelReplay()
    api.wait_for_dags(dags)

    started = time.monotonic()
    print(f"[{tag}] {model}: history {window.history_start} .. {window.history_end}: ingest", flush=True)
    result.history_days = run_days(api, model, window.history_start, window.history_end, f"{model} history", tag)
    api.wait_until_idle(dags)
    result.history_s = time.monotonic() - started

    started = time.monotonic()
    cutoff = window.history_end
    print(f"[{tag}] {model}: training the first champion with cut-off {cutoff}, the newest labelled day", flush=True)
    run_id = f"initial__{cutoff}"
    created = api.trigger(f"{model}__train", run_id, None, {"cutoff_ds": cutoff, "reason": "initial"})
    api.wait_until_idle(dags)
    result.training_s = time.monotonic() - started
    state = api.get(f"/dags/{model}__train/dagRuns/{run_id}")["state"]
    print(f"[{tag}] {model}: first training {state} in {duration_text(result.training_s)}" if created else
          f"[{tag}] {model}: the first training ran before, as {run_id} ({state}); not run again", flush=True)

    started = time.monotonic()
    print(f"[{tag}] {model}: replay {window.replay_start} .. {window.replay_end}: ingest -> score -> monitor",
          flush=True)
    result.replay_days = run_days(api, model, window.replay_start, window.replay_end, f"{model} replay", tag)
    if api.busy(dags):
        print(f"[{tag}] {model}: every day done; waiting for the runs still active (retraining)", flush=True)
    api.wait_until_idle(dags, timeout=3 * 3600)
    result.replay_s = time.monotonic() - started
    return result


def replay(api: AirflowApi, models: list[str], window: Window, tag: str = "replay") -> ReplayRun:
    """Replay the window for each model in turn; returns what the summary needs."""
    run = ReplayRun(window=window, models=models, started_at=datetime.now(timezone.utc))
    started = time.monotonic()
    for model in models:
        run.replays[model] = replay_model(api, model, window, tag)
    run.wall_s = time.monotonic() - started
    return run


def local_api() -> AirflowApi:
    from mlplatform.config import settings

    return AirflowApi.local_admin(settings().airflow_url, Path(os.environ["AIRFLOW_HOME"]))


def parse_args(argv: list[str], configured: list[str]) -> tuple[Window, list[str]]:
    parser = argparse.ArgumentParser(prog="make replay", description="Replay a window of days through Airflow.")
    parser.add_argument("--from", dest="replay_start", default="", help="first replayed day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="replay_end", default="", help="last replayed day, inclusive")
    parser.add_argument("--history-from", default="2013-01-01", help="first history day (ingest only)")
    parser.add_argument("--model", default="flight_delay", help="model name, or several separated by commas")
    args = parser.parse_args(argv)
    if not args.replay_start or not args.replay_end:
        parser.error("set the window: FROM=YYYY-MM-DD TO=YYYY-MM-DD (--from, --to)")
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in models if m not in configured]
    if not models or unknown:
        parser.error(f"unknown model {', '.join(unknown) or repr(args.model)}; configured: {', '.join(configured)}")
    try:
        return Window(args.history_from, args.replay_start, args.replay_end), models
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    from mlplatform.config import model_configs

    window, models = parse_args(sys.argv[1:] if argv is None else argv, [m.name for m in model_configs()])
    api = local_api()
    run = replay(api, models, window)
    print(summary(api, run))
    print("\nThe stack keeps running: `make down` stops it.")


if __name__ == "__main__":
    main()
