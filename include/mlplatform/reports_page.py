"""The "Model reports" page of the Airflow UI: data access and HTML rendering.

Per model it shows the monitored days with one-click links to their reports, trend charts of the
drifted-feature share, realized ROC AUC and late rate with retraining and promotion events marked,
the champion and the promotion log. Data comes from the lake (daily reports and the promotion log)
and the MLflow registry (retrainings, champion); the page still renders, with a notice, when MLflow
is unreachable. Nothing here needs a running Airflow: ``plugins/mlplatform_plugin.py`` serves it,
and unit tests render it from a temporary lake.

Charts are plotly figures built here as JSON and drawn by plotly.js, which the page loads from the
plugin's own route (``PLOTLY_JS``), never from a CDN: inlining its 4.6 MB into every page view
would make the page 50 times heavier, while a separate versioned file is cached by the browser.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from mlplatform import monitoring, promotion, registry
from mlplatform.lake import REPORTS_AREA

if TYPE_CHECKING:
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
TEMPLATES = Path(__file__).parent / "templates"
_DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RETRAINING, PROMOTION, ROLLBACK = "retraining", "promotion", "rollback"


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
    predicted_late_rate: float | None = None


@dataclass(frozen=True)
class Event:
    """A retraining cut-off or a champion move, placed on the charts' day axis."""
    ds: str
    kind: str      # retraining | promotion | rollback
    label: str
    detail: str


@dataclass(frozen=True)
class RegistryState:
    champion: str | None = None
    versions: tuple[dict, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class ModelReports:
    name: str
    description: str
    days: tuple[Day, ...]
    promotions: tuple[dict, ...]
    registry: RegistryState
    events: tuple[Event, ...] = field(default=())

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


def valid_ds(ds: str) -> bool:
    if not _DS.match(ds):
        return False
    try:
        date.fromisoformat(ds)
    except ValueError:
        return False
    return True


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
        late_rate=_number(perf.get("late_rate")), predicted_late_rate=_number(perf.get("predicted_late_rate")),
    )


def _report_files(lake: "Lake", model: str) -> dict[str, list[str]]:
    """ds -> names of the report files it holds, from one recursive listing (one request per page on S3)."""
    base = f"{lake.root.rstrip('/')}/{REPORTS_AREA}/{model}"
    lake.fs.invalidate_cache(base)
    found: dict[str, list[str]] = {}
    for path in lake.fs.find(base) if lake.fs.exists(base) else []:
        parent, name = path.rsplit("/", 2)[-2:]
        ds = parent.removeprefix("ds=")
        if parent.startswith("ds=") and valid_ds(ds) and name in REPORT_FILES:
            found.setdefault(ds, []).append(name)
    return found


def report_days(lake: "Lake", model: str) -> list[Day]:
    """Every day with reports, oldest first. A day's monitor summary and its realized performance (two files,
    two writers) are fetched in one batch (concurrently on S3) and merged (``monitoring.merged_day``)."""
    found = _report_files(lake, model)
    paths = [f"{lake.root.rstrip('/')}/{REPORTS_AREA}/{model}/ds={ds}/{name}" for ds, names in found.items()
             for name in (monitoring.SUMMARY_FILE, monitoring.PERFORMANCE_FILE) if name in names]
    fetched = lake.fs.cat(paths, on_error="return") if paths else {}
    blobs: dict[str, dict] = {}
    for key, blob in fetched.items():
        parent, name = key.rsplit("/", 2)[-2:]
        blobs.setdefault(parent.removeprefix("ds="), {})[name] = blob
    return [_day(ds, tuple(sorted(found[ds])), blobs.get(ds, {})) for ds in sorted(found)]


def _day(ds: str, files: tuple[str, ...], blobs: dict) -> Day:
    if not blobs:
        return Day(ds=ds, files=files, message="no summary.json")
    try:
        parsed = {name: json.loads(blob) for name, blob in blobs.items()}  # a failed fetch is not bytes: TypeError
        record = monitoring.merged_day(parsed.get(monitoring.SUMMARY_FILE), parsed.get(monitoring.PERFORMANCE_FILE))
        return day_from_summary(ds, files, record)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Day(ds=ds, files=files, message=f"{' and '.join(sorted(blobs))} unreadable: {exc}")


def registry_state(tracking_uri: str, model: str, probe: Callable[[str], None] | None = None) -> RegistryState:
    """Versions (retrainings) and champion from MLflow; an error message instead when it cannot be asked."""
    try:
        (probe or probe_mlflow)(tracking_uri)
        mlc = registry.client(tracking_uri)
        found = mlc.search_model_versions(f"name='{model}'")
        champion = registry.version_by_alias(mlc, model, registry.CHAMPION)
    except Exception as exc:  # any failure to reach or read MLflow only degrades the page
        log.warning("model reports: MLflow at %s not readable: %s", tracking_uri, exc)
        return RegistryState(error=f"MLflow at {tracking_uri} could not be read ({type(exc).__name__}: {exc})")
    versions = sorted((_version_row(v) for v in found), key=lambda row: int(row["version"]))
    return RegistryState(champion=str(champion.version) if champion else None, versions=tuple(versions))


def _version_row(version) -> dict:
    tags = dict(version.tags or {})
    millis = version.creation_timestamp
    created = datetime.fromtimestamp(millis / 1000, timezone.utc) if millis else None
    return {"version": str(version.version), "cutoff_ds": tags.get("cutoff_ds"),
            "trigger_reason": tags.get("trigger_reason"), "holdout_auc": _float(tags.get("holdout_auc")),
            "gate": tags.get("promotion_decision"), "created": created.strftime("%Y-%m-%d %H:%M") if created else "",
            "aliases": sorted(version.aliases or [])}


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


def events(promotions: list[dict], state: RegistryState) -> tuple[Event, ...]:
    """Retraining cut-offs (from the registry) and champion moves (from the promotion log), by day."""
    found = [Event(v["cutoff_ds"], RETRAINING, f"v{v['version']}",
                   f"v{v['version']} trained on data before {v['cutoff_ds']} ({v['trigger_reason'] or 'no reason'})")
             for v in state.versions if v["cutoff_ds"] and valid_ds(v["cutoff_ds"])]
    found += [_move_event(entry) for entry in promotions]
    return tuple(sorted((e for e in found if e is not None), key=lambda e: (e.ds, e.kind)))


def _move_event(entry: dict) -> Event | None:
    """A promotion is placed at the cut-off of the training it promotes; a rollback at its wall-clock day."""
    evidence = entry.get("evidence") or {}
    ds = evidence.get("cutoff_ds") or evidence.get("ds") or str(entry.get("at", ""))[:10]
    if not valid_ds(str(ds)):
        return None
    kind = ROLLBACK if entry.get("action") == "rollback" else PROMOTION
    source = f"v{entry['from_version']}" if entry.get("from_version") else "no champion"
    return Event(str(ds), kind, f"v{entry['to_version']}",
                 f"#{entry.get('seq')} {entry.get('action')} {source} → v{entry['to_version']} by "
                 f"{entry.get('actor')}: {entry.get('reason', '')}")


def model_reports(lake: "Lake", model: str, description: str, tracking_uri: str,
                  probe: Callable[[str], None] | None = None) -> ModelReports:
    days = tuple(report_days(lake, model))
    promotions = tuple(promotion.entries(lake, model))
    state = registry_state(tracking_uri, model, probe)
    return ModelReports(model, description, days, promotions, state, events(list(promotions), state))


def report_file(lake: "Lake", known_models: set[str], model: str, ds: str, name: str) -> tuple[bytes, str]:
    """The bytes and media type of one report file, after strict checks of every path part."""
    if model not in known_models or not valid_ds(ds) or name not in REPORT_FILES:
        raise ReportNotFound(f"no report {model}/{ds}/{name}")
    relpath = f"{REPORTS_AREA}/{model}/ds={ds}/{name}"
    try:
        return lake.read_bytes(relpath), REPORT_FILES[name]
    except FileNotFoundError:
        raise ReportNotFound(f"no report {model}/{ds}/{name}") from None


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
}


def _series(days, attr: str) -> list:
    return [getattr(d, attr) for d in days]


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
            x += [e.ds, e.ds, None]
            y += [y_range[0], y_range[1], None]
            text += [e.detail, e.detail, None]
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


def _x_range(days) -> tuple[str, str]:
    first, last = date.fromisoformat(days[0].ds), date.fromisoformat(days[-1].ds)
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


def drift_figure(report: ModelReports) -> dict:
    days, x_range, y_range = report.days, _x_range(report.days), (-0.04, 1.04)
    x = _series(days, "ds")
    data = [_line("drifted share (Evidently)", x, _series(days, "drift_share"), "#9ecae1", fmt=".0%"),
            _line("effective share (policy)", x, _series(days, "effective_share"), "#1f77b4", fmt=".0%")]
    threshold = next((d.share_threshold for d in reversed(days) if d.share_threshold is not None), None)
    if threshold is not None:
        data.append(_line("policy threshold", [x_range[0], x_range[1]], [threshold, threshold], "#ff7f0e",
                          dash="dash", mode="lines", fmt=".0%"))
    layout = _layout("Drifted-feature share", "share of features", y_range, x_range, ".0%")
    return _empty_note({"data": data[:2] + _event_traces(report.events, y_range, x_range) + data[2:],
                        "layout": layout}, data[:2], "no drift summaries yet")


def auc_figure(report: ModelReports) -> dict:
    days, x_range = report.days, _x_range(report.days)
    x = _series(days, "ds")
    realized, validation = _series(days, "realized_auc"), _series(days, "validation_auc")
    y_range = _padded(realized + validation, 0.0, 1.0, (0.5, 1.0))
    data = [_line("realized ROC AUC", x, realized, "#1f77b4"),
            _line("validation AUC (champion)", x, validation, "#9467bd", dash="dash", mode="lines")]
    layout = _layout("ROC AUC", "ROC AUC", y_range, x_range, ".2f")
    return _empty_note({"data": data + _event_traces(report.events, y_range, x_range), "layout": layout},
                       data[:1], "no labelled days yet")


def late_rate_figure(report: ModelReports) -> dict:
    days, x_range = report.days, _x_range(report.days)
    x = _series(days, "ds")
    realized, predicted = _series(days, "late_rate"), _series(days, "predicted_late_rate")
    y_range = _padded(realized + predicted, 0.0, 1.0, (0.0, 0.5))
    data = [_line("late rate (realized)", x, realized, "#d62728", fmt=".1%"),
            _line("late rate (predicted)", x, predicted, "#ff9896", dash="dash", fmt=".1%")]
    layout = _layout("Late rate", "share of flights late", y_range, x_range, ".0%")
    return _empty_note({"data": data + _event_traces(report.events, y_range, x_range), "layout": layout},
                       data, "no labelled days yet")


def figures(report: ModelReports) -> list[dict]:
    if not report.days:
        return []
    return [drift_figure(report), auc_figure(report), late_rate_figure(report)]


def figure_json(figure: dict) -> str:
    """JSON safe to place inside a <script> element."""
    return json.dumps(figure, separators=(",", ":")).replace("</", "<\\/")


# -- page ---------------------------------------------------------------------------------------------
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
    if not report.days:
        return len(report.events)
    first, last = report.days[0].ds, report.days[-1].ds
    return sum(1 for e in report.events if not first <= e.ds <= last)


def render_page(reports: list[ModelReports], lake_uri: str, tracking_uri: str,
                plotly_src: str | None = None, now: datetime | None = None) -> str:
    """The whole page; links to report files and to plotly.js are relative to the page's URL."""
    return _environment().get_template("model_reports.html").render(
        reports=reports, lake_uri=lake_uri, tracking_uri=tracking_uri,
        plotly_src=plotly_src or f"static/{plotly_js_name()}",
        generated=(now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        figures=figures, outside_chart=outside_chart, evidence_summary=evidence_summary, event_style=EVENT_STYLE)
