"""The "Model reports" page of the Airflow UI: data access and HTML rendering.

Per model it lists every day of the model's schedule with its status (scored, skipped, quarantined,
failed, not run) and one-click links to its reports, and charts over those days the drifted-feature
share, realized ROC AUC and calibration (mean predicted probability against the realized late rate),
with retrainings and champion moves marked; then the champion, the promotion log and the retrainings,
linked to MLflow. Data comes from the lake (reports, partitions, quarantine, the promotion log), the
MLflow registry and, when the plugin can ask it, Airflow's task instances; the page still renders,
with a notice, when MLflow is unreachable. Nothing here needs a running Airflow:
``plugins/mlplatform_plugin.py`` serves it, and unit tests render it from a temporary lake.

Charts are plotly figures built here as JSON and drawn by plotly.js, which the page loads from the
plugin's own route (``PLOTLY_JS``), never from a CDN: inlining its 4.6 MB into every page view
would make the page 50 times heavier, while a separate versioned file is cached by the browser.
The page's Content-Security-Policy (``page_csp``) lets only scripts carrying the response's nonce run.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from html.parser import HTMLParser
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote

from mlplatform import monitoring, promotion, registry
from mlplatform.dates import day, day_range, is_ds, shift
from mlplatform.lake import FEATURES_AREA, MANIFEST, PREDICTIONS_AREA, QUARANTINE_AREA, REPORTS_AREA

if TYPE_CHECKING:
    from mlplatform.config import ModelConfig
    from mlplatform.lake import Lake

log = logging.getLogger(__name__)

# File name -> media type: the only files the page serves from a report directory.
REPORT_FILES = {
    "drift_report.html": "text/html; charset=utf-8",
    "performance_report.html": "text/html; charset=utf-8",
    "summary.json": "application/json",
    "performance.json": "application/json",
    "evidently.json": "application/json",
}
REPORT_KINDS = {"drift_report.html": "Drift report", "performance_report.html": "Performance report"}
SUMMARY_FILES = ("summary.json", "performance.json")  # monitoring.SUMMARY_FILE, PERFORMANCE_FILE
# Datasets a day's ingest may quarantine (``quarantine/<model>.<dataset>/<ds>/reason.json``); the first
# two are the day's features, so their quarantine keeps the day from being scored.
QUARANTINE_DATASETS = ("features", "context", "labels")
BLOCKING_QUARANTINES = ("features", "context")
QUARANTINE_REASON = "reason.json"
TEMPLATES = Path(__file__).parent / "templates"
_MODEL_NAME = re.compile(r"[A-Za-z0-9_]+")
RETRAINING, PROMOTION, ROLLBACK, EXTERNAL = "retraining", "promotion", "rollback", "external_move"
SCORED, SKIPPED, QUARANTINED, FAILED, NOT_RUN = "scored", "skipped", "quarantined", "failed", "not run"
STATUSES = (SCORED, SKIPPED, QUARANTINED, FAILED, NOT_RUN)
FAILED_STATES = ("failed", "upstream_failed")
ACTIVE_STATES = ("scheduled", "queued", "running", "up_for_retry", "up_for_reschedule", "deferred", "restarting")
RUN_DAGS = ("ingest", "score", "monitor")  # the DAGs whose task instances say what happened to a day


class ReportNotFound(LookupError):
    """The requested report file does not exist or is not one the page serves."""


# -- data -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Day:
    """One monitored day, as its reports/<model>/ds=<day>/ directory records it."""
    ds: str
    files: tuple[str, ...]
    model_version: str | None = None
    rows: int | None = None
    drift_share: float | None = None
    effective_share: float | None = None
    share_threshold: float | None = None
    action: str | None = None
    reason: str | None = None
    message: str = ""
    realized_auc: float | None = None
    validation_auc: float | None = None
    late_rate: float | None = None
    mean_score: float | None = None
    predicted_late_rate: float | None = None   # the share of rows scored at or above the decision threshold


@dataclass(frozen=True)
class TaskRun:
    """One Airflow task instance of a model's ingest, score or monitor DAG, and the days it processed."""
    dag_id: str
    task_id: str
    run_id: str
    state: str | None
    try_number: int
    map_index: int
    days: tuple[str, ...]
    order: str  # sorts the tries of one task for one day: the run's run_after, then the task's start

    @property
    def stage(self) -> str:
        return self.dag_id.rsplit("__", 1)[-1]


@dataclass(frozen=True)
class DayRow:
    """One day of the model's schedule and what happened to it."""
    ds: str
    status: str
    note: str = ""
    report: Day | None = None
    quarantines: tuple[str, ...] = ()   # datasets quarantined that day
    failures: tuple[TaskRun, ...] = ()  # task instances whose latest try failed


@dataclass(frozen=True)
class Event:
    """A retraining cut-off or a champion move, placed on the charts' day axis."""
    ds: str
    kind: str      # retraining | promotion | rollback | external_move
    label: str
    detail: str


@dataclass(frozen=True)
class RegistryState:
    champion: str | None = None
    versions: tuple[dict, ...] = ()
    error: str | None = None
    experiment_id: str | None = None  # the model's training experiment


@dataclass(frozen=True)
class ModelReports:
    name: str
    description: str
    days: tuple[Day, ...]
    promotions: tuple[dict, ...]
    registry: RegistryState
    events: tuple[Event, ...] = field(default=())
    rows: tuple[DayRow, ...] = field(default=())
    decision_threshold: float = 0.5
    runs_read: bool = False  # whether Airflow's task instances were read (else failures cannot be shown)

    @property
    def champion(self) -> str | None:
        """The registry's champion; the promotion log's last move when MLflow cannot be asked."""
        if self.registry.error is None:
            return self.registry.champion
        return str(self.promotions[-1]["to_version"]) if self.promotions else None

    @property
    def champion_version(self) -> dict | None:
        """The champion's registry row (cut-off, trigger, holdout AUC), if MLflow was read."""
        return next((v for v in self.registry.versions if v["version"] == self.champion), None)

    @property
    def champion_move(self) -> dict | None:
        """The promotion log entry that made the current champion champion."""
        return next((e for e in reversed(self.promotions) if str(e.get("to_version")) == self.champion), None)

    @property
    def logged_versions(self) -> set[str]:
        """Versions some promotion log entry made champion."""
        return {str(e.get("to_version")) for e in self.promotions}

    def status_counts(self) -> dict[str, int]:
        return {s: n for s in STATUSES if (n := sum(1 for r in self.rows if r.status == s))}


def _number(value) -> float | None:
    """A finite number, else None: NaN or infinity would make the chart JSON unparseable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _first_number(*values) -> float | None:
    return next((v for v in map(_number, values) if v is not None), None)


def day_from_summary(ds: str, files: tuple[str, ...], summary: dict) -> Day:
    decision = summary.get("decision") or {}
    perf = summary.get("performance") or {}
    observation = summary.get("observation") or {}
    return Day(
        ds=ds, files=files, model_version=str(summary["model_version"]) if summary.get("model_version") else None,
        rows=summary.get("rows"), drift_share=_number(summary.get("drift_share")),
        effective_share=_number(decision.get("effective_share")),
        share_threshold=_number((decision.get("policy") or {}).get("share")),
        action=decision.get("action"), reason=decision.get("reason"), message=decision.get("message", ""),
        realized_auc=_first_number(perf.get("roc_auc"), observation.get("realized_auc")),
        validation_auc=_first_number(perf.get("validation_auc"), decision.get("validation_auc")),
        late_rate=_first_number(perf.get("late_rate"), perf.get("positive_rate")),
        mean_score=_number(perf.get("mean_score")), predicted_late_rate=_number(perf.get("predicted_late_rate")),
    )


def _listing(lake: "Lake", relbase: str, day_prefix: str = "ds=") -> dict[str, set[str]]:
    """ds -> names of the files in each day directory under ``relbase``, from one recursive listing (one
    request per thousand files on S3)."""
    base = f"{lake.root.rstrip('/')}/{relbase}"
    lake.fs.invalidate_cache(base)
    found: dict[str, set[str]] = {}
    for path in lake.fs.find(base) if lake.fs.exists(base) else []:
        parent, name = path.rsplit("/", 2)[-2:]
        ds = parent.removeprefix(day_prefix)
        if parent.startswith(day_prefix) and is_ds(ds):
            found.setdefault(ds, set()).add(name)
    return found


def _fetch(lake: "Lake", relpaths: list[str]) -> dict[tuple[str, str], bytes | Exception]:
    """(day directory, file name) -> bytes (or the error) of each file, fetched in one batch (concurrently on S3)."""
    if not relpaths:
        return {}
    fetched = lake.fs.cat([f"{lake.root.rstrip('/')}/{p}" for p in relpaths], on_error="return")
    return {tuple(key.rsplit("/", 2)[-2:]): blob for key, blob in fetched.items()}


def report_days(lake: "Lake", model: str) -> list[Day]:
    """Every day with reports, oldest first; its summary and performance files are fetched in one batch."""
    found = {ds: names for ds, names in _listing(lake, f"{REPORTS_AREA}/{model}").items() if names & set(REPORT_FILES)}
    blobs = _fetch(lake, [f"{REPORTS_AREA}/{model}/ds={ds}/{name}"
                          for ds, names in found.items() for name in SUMMARY_FILES if name in names])
    return [_day(ds, tuple(sorted(found[ds] & set(REPORT_FILES))), blobs.get((f"ds={ds}", "summary.json")),
                 blobs.get((f"ds={ds}", "performance.json"))) for ds in sorted(found)]


def _day(ds: str, files: tuple[str, ...], summary_blob, performance_blob=None) -> Day:
    if not isinstance(summary_blob, bytes) and not isinstance(performance_blob, bytes):
        if summary_blob is None:
            return Day(ds=ds, files=files, message="no summary.json")
        return Day(ds=ds, files=files, message=f"summary unreadable: {summary_blob}")
    try:
        summary = json.loads(summary_blob) if isinstance(summary_blob, bytes) else None
        performance = json.loads(performance_blob) if isinstance(performance_blob, bytes) else None
        return day_from_summary(ds, files, monitoring.merged_day(summary, performance) or {})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Day(ds=ds, files=files, message=f"summary.json or performance.json unreadable: {exc}")


def committed_days(lake: "Lake", area: str, model: str) -> set[str]:
    """Days whose partition has a manifest (readers trust only manifests)."""
    return {ds for ds, names in _listing(lake, f"{area}/{model}").items() if MANIFEST in names}


def quarantined_days(lake: "Lake", model: str) -> dict[str, tuple[str, ...]]:
    """ds -> the model's datasets quarantined that day (those with a reason)."""
    found: dict[str, list[str]] = {}
    for dataset in QUARANTINE_DATASETS:
        for ds, names in _listing(lake, f"{QUARANTINE_AREA}/{model}.{dataset}", day_prefix="").items():
            if QUARANTINE_REASON in names:
                found.setdefault(ds, []).append(dataset)
    return {ds: tuple(datasets) for ds, datasets in found.items()}


def _extracted_at(lake: "Lake", model: str, days: set[str]) -> dict[str, datetime]:
    """When each of these days' feature partitions was committed, from their manifests."""
    blobs = _fetch(lake, [f"{FEATURES_AREA}/{model}/ds={ds}/{MANIFEST}" for ds in sorted(days)])
    found = {}
    for (parent, _), blob in blobs.items():
        try:
            found[parent.removeprefix("ds=")] = _utc(json.loads(blob)["extracted_at"])
        except (ValueError, KeyError, TypeError):
            continue
    return found


@dataclass(frozen=True)
class LakeOutputs:
    """What the lake holds for one model, by day."""
    reports: dict[str, Day]
    features: set[str]
    predictions: set[str]
    quarantines: dict[str, tuple[str, ...]]
    features_extracted_at: dict[str, datetime] = field(default_factory=dict)  # of the unscored days only

    @property
    def days(self) -> set[str]:
        return set(self.reports) | self.features | self.predictions | set(self.quarantines)

    def scored(self, ds: str) -> bool:
        return ds in self.predictions or ds in self.reports


def lake_outputs(lake: "Lake", model: str, reports: list[Day] | None = None) -> LakeOutputs:
    found = LakeOutputs(reports={d.ds: d for d in (reports if reports is not None else report_days(lake, model))},
                        features=committed_days(lake, FEATURES_AREA, model),
                        predictions=committed_days(lake, PREDICTIONS_AREA, model),
                        quarantines=quarantined_days(lake, model))
    unscored = {ds for ds in found.features if not found.scored(ds)}
    return replace(found, features_extracted_at=_extracted_at(lake, model, unscored))


# -- the schedule and each day's status ----------------------------------------------------------------
def schedule_days(cron: str, start, end, last: str) -> list[str]:
    """The logical days of the model's ingest schedule (a cron in UTC) from its start to ``last``, within its end."""
    stop = min(last, str(end)) if end else last
    try:
        return _cron_days(cron, str(start), stop)
    except (ValueError, KeyError, ArithmeticError) as exc:  # croniter's errors; the config check reports them
        log.warning("model reports: schedule %r not usable (%s); listing every calendar day", cron, exc)
        return day_range(str(start), stop) if str(start) <= stop else []


def _cron_days(cron: str, first: str, stop: str) -> list[str]:
    """At most one cron evaluation per listed day: after a fire, the search resumes at the next midnight."""
    from croniter import croniter

    days, ds = [], first
    while ds <= stop:
        fire = croniter(cron, datetime.combine(day(ds), time.min) - timedelta(seconds=1)).get_next(datetime)
        ds = fire.date().isoformat()
        if ds <= stop:
            days.append(ds)
        ds = shift(ds, 1)
    return days


def run_days(extras: list[dict], conf: dict | None, logical_date: datetime | None) -> tuple[str, ...]:
    """The days a DAG run processed, as ``orchestration.triggered_days`` finds them: its triggering asset
    events' ``days``; else its ``ds`` param; else its logical date."""
    days = {d for extra in extras for d in (extra or {}).get("days", []) if is_ds(d)}
    if not days:
        explicit = (conf or {}).get("ds") or (logical_date.strftime("%Y-%m-%d") if logical_date else None)
        days = {explicit} if is_ds(explicit) else set()
    return tuple(sorted(days))


def latest_runs_by_day(runs: list[TaskRun]) -> dict[str, list[TaskRun]]:
    """ds -> the latest try of each task that processed the day (a re-run supersedes a failure)."""
    latest: dict[tuple, TaskRun] = {}
    for run in sorted(runs, key=lambda r: r.order):
        for ds in run.days:
            latest[(ds, run.dag_id, run.task_id, run.map_index)] = run
    by_day: dict[str, list[TaskRun]] = {}
    for (ds, *_), run in sorted(latest.items()):
        by_day.setdefault(ds, []).append(run)
    return by_day


def task_log_href(run: TaskRun) -> str:
    """The task instance's log in the Airflow UI, relative to the page (``<base>/model-reports/``)."""
    path = "../dags/{}/runs/{}/tasks/{}".format(*(quote(p, safe="") for p in (run.dag_id, run.run_id, run.task_id)))
    if run.map_index >= 0:
        path += f"/mapped/{run.map_index}"
    return f"{path}?try_number={run.try_number}"


def day_row(ds: str, outputs: LakeOutputs, runs: list[TaskRun] | None, champion_since: datetime | None) -> DayRow:
    """A day's status: scored, else quarantined, else failed (per Airflow), else skipped for want of a
    champion, else not run."""
    runs = runs or []
    failures = tuple(r for r in runs if r.state in FAILED_STATES)
    common = {"report": outputs.reports.get(ds), "quarantines": outputs.quarantines.get(ds, ()),
              "failures": tuple(r for r in failures if r.state == "failed")}
    if outputs.scored(ds):
        return DayRow(ds, SCORED, **common)
    if set(common["quarantines"]) & set(BLOCKING_QUARANTINES):
        return DayRow(ds, QUARANTINED, **common)
    if failures:  # failed tries are linked to their logs; a task that never ran for a failed upstream is named
        unlinked = [f"{r.stage}.{r.task_id} {r.state}" for r in failures if r.state != "failed"]
        return DayRow(ds, FAILED, ", ".join(unlinked), **common)
    if any(r.stage == "score" and r.state == "skipped" for r in runs):
        return DayRow(ds, SKIPPED, "no champion", **common)
    if ds in outputs.features:
        extracted = outputs.features_extracted_at.get(ds)
        if extracted and (champion_since is None or extracted < champion_since):
            return DayRow(ds, SKIPPED, "no champion when its features were ingested", **common)
        return DayRow(ds, NOT_RUN, "features ingested, not scored", **common)
    active = [r for r in runs if r.state in ACTIVE_STATES]
    return DayRow(ds, NOT_RUN, "in progress: " + ", ".join(f"{r.task_id} {r.state}" for r in active) if active else "",
                  **common)


def first_champion_at(promotions: list[dict]) -> datetime | None:
    """When the promotion log (oldest entry first) first made a version champion."""
    for entry in promotions:
        try:
            return _utc(str(entry.get("at")))
        except ValueError:
            continue
    return None


def _utc(text: str) -> datetime:
    """An ISO timestamp; one without a zone is taken as UTC, so that any two compare."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def day_rows(cfg: "ModelConfig", outputs: LakeOutputs, runs: list[TaskRun] | None,
             promotions: list[dict]) -> tuple[DayRow, ...]:
    """Every day of the schedule up to the last day with any lake output or task run, plus any other day
    with output; oldest first."""
    by_day = latest_runs_by_day(runs) if runs is not None else {}
    active = outputs.days | set(by_day)
    if not active:
        return ()
    schedule = cfg.schedule
    days = set(schedule_days(schedule.ingest, schedule.start_date, schedule.end_date, max(active))) | outputs.days
    since = first_champion_at(promotions)
    return tuple(day_row(ds, outputs, by_day.get(ds), since) for ds in sorted(days))


# -- MLflow -----------------------------------------------------------------------------------------
def registry_state(tracking_uri: str, model: str, probe: Callable[[str], None] | None = None) -> RegistryState:
    """Versions (retrainings, with their search candidates) and champion from MLflow; an error message
    instead when it cannot be asked."""
    try:
        (probe or probe_mlflow)(tracking_uri)
        mlc = registry.client(tracking_uri)
        found = mlc.search_model_versions(f"name='{model}'")
        champion = registry.version_by_alias(mlc, model, registry.CHAMPION)
        experiment_id, candidates = candidate_runs(mlc, model)
    except Exception as exc:  # any failure to reach or read MLflow only degrades the page
        log.warning("model reports: MLflow at %s not readable: %s", tracking_uri, exc)
        return RegistryState(error=f"MLflow at {tracking_uri} could not be read ({type(exc).__name__}: {exc})")
    versions = sorted((_version_row(v, experiment_id, candidates) for v in found), key=lambda row: int(row["version"]))
    return RegistryState(champion=str(champion.version) if champion else None, versions=tuple(versions),
                         experiment_id=experiment_id)


def candidate_runs(mlc, model: str) -> tuple[str | None, dict[str, tuple[str, ...]]]:
    """The training experiment's id and, per training (parent) run, its search candidates (child runs)."""
    experiment = mlc.get_experiment_by_name(model)
    if experiment is None:
        return None, {}
    children: dict[str, list[str]] = {}
    token = None
    while True:
        page = mlc.search_runs([experiment.experiment_id], "tags.mlflow.parentRunId LIKE '%'",
                               max_results=1000, page_token=token)
        for run in page:
            children.setdefault(run.data.tags["mlflow.parentRunId"], []).append(run.info.run_id)
        token = page.token
        if not token:
            return experiment.experiment_id, {parent: tuple(ids) for parent, ids in children.items()}


def _version_row(version, experiment_id: str | None = None, candidates: dict | None = None) -> dict:
    tags = dict(version.tags or {})
    millis = version.creation_timestamp
    created = datetime.fromtimestamp(millis / 1000, timezone.utc) if millis else None
    children = (candidates or {}).get(version.run_id, ())
    return {"version": str(version.version), "cutoff_ds": tags.get("cutoff_ds"),
            "trigger_reason": tags.get("trigger_reason"), "holdout_auc": _float(tags.get("holdout_auc")),
            "gate": tags.get("promotion_decision"), "created": created.strftime("%Y-%m-%d %H:%M") if created else "",
            "aliases": sorted(version.aliases or []), "run_id": version.run_id,
            "experiment_id": experiment_id if children else None, "candidates": tuple(children)}


def _float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def probe_mlflow(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Fail fast on an HTTP tracking server that does not answer: the client itself retries for minutes."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.request

    with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s) as response:
        response.read()


@dataclass(frozen=True)
class MlflowLinks:
    """Addresses in the MLflow 3 UI (hash routes of its single-page app); None without an HTTP UI.

    Each carries ``workflowType=machine_learning``: the 3.17 UI takes the mode (GenAI or model training)
    from the address, else from the browser's last choice, and starts in GenAI mode."""
    base: str | None

    @classmethod
    def for_ui(cls, ui_url: str | None) -> "MlflowLinks":
        usable = ui_url and ui_url.startswith(("http://", "https://"))
        return cls(ui_url.rstrip("/") if usable else None)

    def _at(self, route: str, **query: str) -> str | None:
        if not self.base:
            return None
        return f"{self.base}/#{route}?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in
                                                   {**query, "workflowType": "machine_learning"}.items())

    def models(self) -> str | None:
        return self._at("/models")

    def model(self, name: str) -> str | None:
        return self._at(f"/models/{quote(name, safe='')}")

    def version(self, name: str, version: str) -> str | None:
        return self._at(f"/models/{quote(name, safe='')}/versions/{quote(str(version), safe='')}")

    def run(self, run_id: str | None, experiment_id: str | None = None) -> str | None:
        if not run_id:
            return None
        if experiment_id:
            return self._at(f"/experiments/{quote(experiment_id, safe='')}/runs/{quote(run_id, safe='')}")
        return self._at(f"/runs/{quote(run_id, safe='')}")

    def trainings(self, experiment_id: str | None) -> str | None:
        """The training experiment's runs, in the saved view with the holdout metrics as columns."""
        if not experiment_id:
            return None
        return self._at(f"/experiments/{quote(experiment_id, safe='')}/runs",
                        viewStateShareKey=registry.TRAININGS_VIEW)

    def compare(self, run_ids, experiment_id: str | None) -> str | None:
        if not run_ids or not experiment_id:
            return None
        runs, experiments = (json.dumps(list(v), separators=(",", ":")) for v in (run_ids, [experiment_id]))
        return self._at("/compare-runs", runs=runs, experiments=experiments)


# -- events -----------------------------------------------------------------------------------------
def events(promotions: list[dict], state: RegistryState) -> tuple[Event, ...]:
    """Retraining cut-offs (from the registry) and champion moves (from the promotion log), by day."""
    found = [Event(v["cutoff_ds"], RETRAINING, f"v{v['version']}",
                   f"v{v['version']} trained on data before {v['cutoff_ds']} ({v['trigger_reason'] or 'no reason'})")
             for v in state.versions if v["cutoff_ds"] and is_ds(v["cutoff_ds"])]
    found += [_move_event(entry) for entry in promotions]
    return tuple(sorted((e for e in found if e is not None), key=lambda e: (e.ds, e.kind)))


MOVE_KINDS = {"rollback": ROLLBACK, "external_move": EXTERNAL}


def _move_event(entry: dict) -> Event | None:
    """A promotion is placed at the cut-off of the training it promotes; a rollback, and an alias move made
    outside the platform, at the wall-clock day it happened (or was detected)."""
    kind = MOVE_KINDS.get(entry.get("action"), PROMOTION)
    evidence = entry.get("evidence") or {}
    at_day = str(entry.get("at", ""))[:10]
    ds = at_day if kind == EXTERNAL else evidence.get("cutoff_ds") or evidence.get("ds") or at_day
    if not is_ds(str(ds)):
        return None
    source = f"v{entry['from_version']}" if entry.get("from_version") else "no champion"
    return Event(str(ds), kind, f"v{entry['to_version']}",
                 f"#{entry.get('seq')} {entry.get('action')} {source} → v{entry['to_version']} by "
                 f"{entry.get('actor')}: {entry.get('reason', '')}")


def model_reports(lake: "Lake", cfg: "ModelConfig", tracking_uri: str, probe: Callable[[str], None] | None = None,
                  runs: list[TaskRun] | None = None) -> ModelReports:
    """Everything the page shows for one model; ``runs`` are its Airflow task instances, None if unknown."""
    days = report_days(lake, cfg.name)
    promotions = tuple(promotion.entries(lake, cfg.name))
    state = registry_state(tracking_uri, cfg.name, probe)
    rows = day_rows(cfg, lake_outputs(lake, cfg.name, days), runs, list(promotions))
    return ModelReports(cfg.name, cfg.description, tuple(days), promotions, state, events(list(promotions), state),
                        rows=rows, decision_threshold=cfg.thresholds.decision_threshold, runs_read=runs is not None)


# -- report files -------------------------------------------------------------------------------------
def report_file(lake: "Lake", known_models: set[str], model: str, ds: str, name: str) -> tuple[bytes, str]:
    """The bytes and media type of one report file, after strict checks of every path part."""
    if model not in known_models or not is_ds(ds) or name not in REPORT_FILES:
        raise ReportNotFound(f"no report {model}/{ds}/{name}")
    relpath = f"{REPORTS_AREA}/{model}/ds={ds}/{name}"
    try:
        return lake.read_bytes(relpath), REPORT_FILES[name]
    except FileNotFoundError:
        raise ReportNotFound(f"no report {model}/{ds}/{name}") from None


def quarantine_reason(lake: "Lake", known_models: set[str], model: str, ds: str, dataset: str) -> bytes:
    """A quarantined batch's ``reason.json``, after the same strict checks."""
    if model not in known_models or not is_ds(ds) or dataset not in QUARANTINE_DATASETS:
        raise ReportNotFound(f"no quarantine {model}.{dataset}/{ds}")
    try:
        return lake.read_bytes(f"{QUARANTINE_AREA}/{model}.{dataset}/{ds}/{QUARANTINE_REASON}")
    except FileNotFoundError:
        raise ReportNotFound(f"no quarantine {model}.{dataset}/{ds}") from None


def served_report(lake: "Lake", known_models: set[str], model: str, ds: str, name: str) -> tuple[bytes, str]:
    """A report file as served: HTML reports get a title and a header bar naming the model, the day, the
    kind of report and the version that scored the day, with a link back to the page. The file in the
    lake is never changed."""
    payload, media_type = report_file(lake, known_models, model, ds, name)
    if name not in REPORT_KINDS:
        return payload, media_type
    version = scored_by(lake, model, ds)
    title = f"{REPORT_KINDS[name]} · {model} · {ds}"
    bar = _environment().get_template("report_header.html").render(
        title=title, kind=REPORT_KINDS[name], model=model, ds=ds, version=version,
        back_href=f"../../back/{quote(model, safe='')}")
    return with_header(payload, title, bar), media_type


def back_page(model: str) -> str:
    """The page a report's back link opens (``/model-reports/back/<model>``): it refreshes at once to the
    model's section of the reports page, a navigation the browser sends the session cookie with."""
    if not _MODEL_NAME.fullmatch(model):
        raise ReportNotFound(f"no model {model!r}")
    return _environment().get_template("back.html").render(target=f"../#model-{model}")


def scored_by(lake: "Lake", model: str, ds: str) -> str | None:
    """The champion version that scored the day, per its summary."""
    try:
        version = lake.read_json(f"{REPORTS_AREA}/{model}/ds={ds}/summary.json").get("model_version")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return str(version) if version else None


class _StartTags(HTMLParser):
    """Where the first <head>, <title>, </title> and <body> tags are. The parser treats script and style
    contents as text, as browsers do, so data inlined in a report cannot pose as a tag."""

    class Found(Exception):
        pass

    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.tags: dict[str, tuple[int, int, str | None]] = {}  # tag -> (line, column, the start tag's text)

    def handle_starttag(self, tag, attrs):
        if tag in ("head", "title", "body") and tag not in self.tags:
            self.tags[tag] = (*self.getpos(), self.get_starttag_text())
            if tag == "body":
                raise self.Found

    def handle_endtag(self, tag):
        if tag == "title" and "/title" not in self.tags:
            self.tags["/title"] = (*self.getpos(), None)


def _start_tags(document: str) -> dict[str, tuple[int, int]]:
    """tag -> (offset of the tag, offset just after it)."""
    parser = _StartTags()
    try:
        parser.feed(document)
    except _StartTags.Found:
        pass
    offsets = {}
    for tag, (line, col, text) in parser.tags.items():
        start = _line_start(document, line) + col
        offsets[tag] = (start, start + len(text) if text else document.index(">", start) + 1)
    return offsets


def _line_start(document: str, line: int) -> int:
    """The offset of 1-based ``line`` (HTMLParser counts lines by newline characters)."""
    offset = 0
    for _ in range(line - 1):
        offset = document.index("\n", offset) + 1
    return offset


def with_header(payload: bytes, title: str, bar: str) -> bytes:
    """The HTML document with ``title`` as its title and ``bar`` first in its body."""
    document = payload.decode("utf-8", errors="surrogateescape")
    tags = _start_tags(document)
    title_tag = f"<title>{html.escape(title)}</title>"
    edits = []  # (start, end, replacement), applied from the end
    if "title" in tags and "/title" in tags and tags["title"][0] < tags.get("body", (len(document),))[0]:
        edits.append((tags["title"][0], tags["/title"][1], title_tag))
    elif "head" in tags:
        edits.append((tags["head"][1], tags["head"][1], title_tag))
    else:
        edits.append((0, 0, title_tag))
    at = tags["body"][1] if "body" in tags else 0
    edits.append((at, at, bar))
    for start, end, text in sorted(edits, key=lambda e: e[0], reverse=True):
        document = document[:start] + text + document[end:]
    return document.encode("utf-8", errors="surrogateescape")


def plotly_js_name() -> str:
    """Versioned, so browsers may cache it for good."""
    return f"plotly-{metadata.version('plotly')}.min.js"


def plotly_js() -> tuple[str, bytes]:
    """plotly.js as installed with the plotly package: (file name, bytes)."""
    return plotly_js_name(), resources.files("plotly").joinpath("package_data/plotly.min.js").read_bytes()


# -- charts -----------------------------------------------------------------------------------------
EVENT_STYLE = {  # kind -> (legend name, colour, dash)
    RETRAINING: ("retraining cut-off", "#7f7f7f", "dot"),
    PROMOTION: ("promotion", "#2ca02c", "solid"),
    ROLLBACK: ("rollback", "#d62728", "dash"),
    EXTERNAL: ("alias moved outside the platform", "#8c564b", "dashdot"),
}


def chart_days(report: ModelReports) -> list[str]:
    """The charts' day axis: every schedule day from the first monitored day to the last listed day, so
    a day without a value breaks the lines instead of being bridged."""
    if not report.days:
        return []
    first = report.days[0].ds
    axis = [r.ds for r in report.rows if r.ds >= first]
    return axis or [d.ds for d in report.days]


def _series(axis: list[str], by_day: dict[str, Day], attr: str) -> list:
    return [getattr(by_day[ds], attr) if ds in by_day else None for ds in axis]


def _line(name: str, x: list, y: list, color: str, dash: str = "solid", mode: str = "lines+markers",
          fmt: str = ".3f") -> dict:
    return {"type": "scatter", "mode": mode, "name": name, "x": x, "y": y, "connectgaps": False,
            "line": {"color": color, "dash": dash, "width": 2}, "marker": {"size": 5},
            "hovertemplate": f"%{{x|%Y-%m-%d}}: %{{y:{fmt}}}<extra>{name}</extra>"}


def _event_traces(model_events: tuple[Event, ...], y_range: tuple[float, float], x_range: tuple[str, str]) -> list:
    traces = []
    for kind, (name, color, dash) in EVENT_STYLE.items():
        shown = [e for e in model_events if e.kind == kind and x_range[0] <= e.ds <= x_range[1]]
        if not shown:
            continue
        x, y, text = [], [], []
        for e in shown:
            detail = html.escape(e.detail)  # plotly renders tags in hover text; log entries are free text
            x += [e.ds, e.ds, None]
            y += [y_range[0], y_range[1], None]
            text += [detail, detail, None]
        traces.append({"type": "scatter", "mode": "lines", "name": name, "x": x, "y": y, "text": text,
                       "line": {"color": color, "dash": dash, "width": 1.5}, "opacity": 0.8, "showlegend": False,
                       "hovertemplate": "%{x|%Y-%m-%d}<br>%{text}<extra></extra>"})
    return traces


def _layout(title: str, y_title: str, y_range: tuple[float, float], x_range: tuple[str, str], fmt: str) -> dict:
    return {
        "title": {"text": title, "x": 0.01, "font": {"size": 14}},
        "height": 300, "margin": {"l": 52, "r": 12, "t": 36, "b": 36},
        "xaxis": {"type": "date", "range": list(x_range), "showgrid": True, "gridcolor": "#eef0f3",
                  "tickformat": "%b %-d", "hoverformat": "%Y-%m-%d"},
        "yaxis": {"title": {"text": y_title}, "range": list(y_range), "tickformat": fmt, "gridcolor": "#eef0f3",
                  "zeroline": False},
        "legend": {"orientation": "h", "y": -0.14, "font": {"size": 11}},
        "hovermode": "closest", "plot_bgcolor": "#ffffff", "paper_bgcolor": "#ffffff",
        "font": {"family": "-apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif", "size": 12},
    }


def _x_range(axis: list[str]) -> tuple[str, str]:
    first, last = date.fromisoformat(axis[0]), date.fromisoformat(axis[-1])
    pad = max(1, (last - first).days // 30)
    return (date.fromordinal(first.toordinal() - pad).isoformat(), date.fromordinal(last.toordinal() + pad).isoformat())


def _padded(values: list, floor: float, ceiling: float, default: tuple[float, float]) -> tuple[float, float]:
    present = [v for v in values if v is not None]
    if not present:
        return default
    low, high = min(present), max(present)
    pad = max(0.02, (high - low) * 0.15)
    below = pad + 0.05 * (high - low + 2 * pad)  # keeps the lowest tick label off the x axis' first label
    return max(floor - pad / 2, low - below), min(ceiling + pad / 2, high + pad)


def _empty_note(figure: dict, traces_with_data: list, note: str) -> dict:
    if not any(v is not None for t in traces_with_data for v in t["y"]):
        figure["layout"]["annotations"] = [{"text": note, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                                            "showarrow": False, "font": {"color": "#6b7280", "size": 13}}]
    return figure


def _axis(report: ModelReports) -> tuple[list[str], dict[str, Day], tuple[str, str]]:
    axis = chart_days(report)
    return axis, {d.ds: d for d in report.days}, _x_range(axis)


def drift_figure(report: ModelReports) -> dict:
    (x, by_day, x_range), y_range = _axis(report), (-0.04, 1.04)
    data = [_line("drifted share (Evidently)", x, _series(x, by_day, "drift_share"), "#9ecae1", fmt=".0%"),
            _line("effective share (policy)", x, _series(x, by_day, "effective_share"), "#1f77b4", fmt=".0%")]
    threshold = next((d.share_threshold for d in reversed(report.days) if d.share_threshold is not None), None)
    if threshold is not None:
        data.append(_line("policy threshold", [x_range[0], x_range[1]], [threshold, threshold], "#ff7f0e",
                          dash="dash", mode="lines", fmt=".0%"))
    layout = _layout("Drifted-feature share", "share of features", y_range, x_range, ".0%")
    return _empty_note({"data": data[:2] + _event_traces(report.events, y_range, x_range) + data[2:],
                        "layout": layout}, data[:2], "no drift summaries yet")


def auc_figure(report: ModelReports) -> dict:
    x, by_day, x_range = _axis(report)
    realized, validation = _series(x, by_day, "realized_auc"), _series(x, by_day, "validation_auc")
    y_range = _padded(realized + validation, 0.0, 1.0, (0.5, 1.0))
    data = [_line("realized ROC AUC", x, realized, "#1f77b4"),
            _line("validation AUC (champion)", x, validation, "#9467bd", dash="dash", mode="lines")]
    layout = _layout("ROC AUC", "ROC AUC", y_range, x_range, ".2f")
    return _empty_note({"data": data + _event_traces(report.events, y_range, x_range), "layout": layout},
                       data[:1], "no labelled days yet")


CALIBRATION_TITLE = "Calibration: predicted vs realized late rate"
REALIZED_LATE_RATE, MEAN_PREDICTED = "late rate (realized)", "mean predicted probability"


def flagged_share_name(threshold: float) -> str:
    return f"share scored ≥ {threshold:g} (decision threshold)"


def calibration_figure(report: ModelReports) -> dict:
    """Per day, the mean predicted probability against the realized late rate; the share of rows at or
    above the decision threshold is a decision rate, not a prediction of the late rate, and says so."""
    x, by_day, x_range = _axis(report)
    realized, mean_score = _series(x, by_day, "late_rate"), _series(x, by_day, "mean_score")
    flagged = _series(x, by_day, "predicted_late_rate")
    y_range = _padded(realized + mean_score + flagged, 0.0, 1.0, (0.0, 0.5))
    data = [_line(REALIZED_LATE_RATE, x, realized, "#d62728", fmt=".1%"),
            _line(MEAN_PREDICTED, x, mean_score, "#ff7f0e", dash="dash", fmt=".1%"),
            _line(flagged_share_name(report.decision_threshold), x, flagged, "#bdbdbd", dash="dot", fmt=".1%")]
    layout = _layout(CALIBRATION_TITLE, "share of flights", y_range, x_range, ".0%")
    return _empty_note({"data": data + _event_traces(report.events, y_range, x_range), "layout": layout},
                       data[:2], "no labelled days yet")


def figures(report: ModelReports) -> list[dict]:
    if not report.days:
        return []
    return [drift_figure(report), auc_figure(report), calibration_figure(report)]


# Characters that could end a <script> element or start a comment in it, and the JavaScript line separators.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                 "\u2028": "\\u2028", "\u2029": "\\u2029"})


def script_json(value) -> str:
    """JSON that is inert inside a <script> element whatever strings it holds: no ``</script>``, ``<!--``
    or ``<script>`` can appear in it, and JSON.parse reads it back unchanged."""
    return json.dumps(value, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def figure_json(figure: dict) -> str:
    """A chart's JSON, safe to place inside a <script> element."""
    return script_json(figure)


# -- page ---------------------------------------------------------------------------------------------
def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def page_csp(nonce: str) -> str:
    """The page's Content-Security-Policy. Only scripts carrying this response's nonce run (plotly.js and the
    page's loader); the chart data are JSON blocks, never executed. Styles may be inline because plotly.js
    injects its own. Only the Airflow UI (same origin) may frame the page."""
    return "; ".join([
        "default-src 'none'", f"script-src 'nonce-{nonce}'", "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:", "font-src 'self' data:", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'self'",
    ])


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=0: "–" if v is None else f"{v:.{digits}%}"
    env.filters["num"] = lambda v, digits=3: "–" if v is None else f"{v:.{digits}f}"
    env.filters["figure_json"] = figure_json
    return env


def evidence_summary(evidence: dict) -> str:
    """The gate's verdict in one line, when the entry carries it (promotion.promote's evidence)."""
    challenger, champion = _number(evidence.get("challenger_auc")), _number(evidence.get("champion_auc"))
    if challenger is None:
        return ""
    against = f"{champion:.4f}" if champion is not None else "prior rate"
    gain = _number(evidence.get("auc_gain"))
    return f"holdout AUC {challenger:.4f} vs {against}" + (f" ({gain:+.4f})" if gain is not None else "")


def outside_chart(report: ModelReports) -> int:
    """Events that fall outside the charted days (listed in the tables only)."""
    axis = chart_days(report)
    if not axis:
        return len(report.events)
    return sum(1 for e in report.events if not axis[0] <= e.ds <= axis[-1])


def render_page(reports: list[ModelReports], lake_uri: str, tracking_uri: str, nonce: str,
                plotly_src: str | None = None, now: datetime | None = None, mlflow_ui: str | None = None,
                config_errors=()) -> str:
    """The whole page; links to report files and to plotly.js are relative to the page's URL. Serve it with
    ``page_csp(nonce)``. ``config_errors`` (``config.ModelConfigError``: ``.file``, ``.lines``) become one
    notice per broken file."""
    return _environment().get_template("model_reports.html").render(
        reports=reports, lake_uri=lake_uri, tracking_uri=tracking_uri, nonce=nonce, config_errors=config_errors,
        plotly_src=plotly_src or f"static/{plotly_js_name()}",
        generated=(now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        mlflow=MlflowLinks.for_ui(mlflow_ui or tracking_uri), figures=figures, outside_chart=outside_chart,
        evidence_summary=evidence_summary, event_style=EVENT_STYLE, task_log_href=task_log_href)
