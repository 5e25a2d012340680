"""Airflow UI additions for the platform: the "Model reports" page and a link to the MLflow UI.

The page is a FastAPI app mounted by the api-server at ``/model-reports`` and embedded in the UI
(an iframe at ``/plugin/model-reports``) by an external view in the navigation bar:

- ``GET /model-reports/``: every configured model's days and reports, trend charts, champion and
  promotion log (rendered by ``mlplatform.reports_page``), and a notice for each model file that
  failed validation. Model files are re-read when they change, so a new, changed or removed model
  appears here, and in the report routes, without restarting the api-server;
- ``GET /model-reports/{model}/{ds}/{file}``: one report file from the lake, ``file`` being one of
  ``reports_page.REPORT_FILES``; HTML reports get a title and a header bar with a link back;
- ``GET /model-reports/{model}/{ds}/quarantine/{dataset}/reason.json``: why a day's batch was quarantined;
- ``GET /model-reports/static/plotly-<version>.min.js``: plotly.js from the installed plotly package.

The page shows each day's failed tasks from Airflow's own metadata (the plugin runs inside the
api-server), limited to the DAGs whose task instances the user may read.

Airflow does not protect plugin FastAPI apps, so every route here requires the Airflow session
itself: the UI's JWT cookie (or an ``Authorization: Bearer`` token) checked by the auth manager,
which must allow the user the ``WEBSITE`` view. A browser without a session is sent to the login
page and back.
"""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/model-reports"
log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False)


async def require_viewer(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """The Airflow user of this request (session cookie or bearer token), allowed to see the website."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user

    try:
        user = await get_user(request, None, credentials)
    except HTTPException as exc:  # missing, expired or invalid token: no session, so log in (again)
        raise HTTPException(status_code=401, detail=exc.detail) from None
    if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(status_code=403, detail="Forbidden")
    request.state.airflow_user = user


app = FastAPI(title="Model reports", docs_url=None, redoc_url=None, openapi_url=None)
viewer = APIRouter(dependencies=[Depends(require_viewer)])  # every route but the back link's bounce


@app.exception_handler(HTTPException)
async def _login_or_error(request: Request, exc: HTTPException) -> Response:
    """A browser without a valid session goes to the login page, and comes back here after it."""
    wants_html = "text/html" in request.headers.get("accept", "")
    if exc.status_code == 401 and request.method == "GET" and wants_html:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=307)
    return Response(content=str(exc.detail), status_code=exc.status_code, media_type="text/plain",
                    headers=getattr(exc, "headers", None))


def _model_configs():
    from mlplatform.config import model_configs

    return model_configs()


def _known_models() -> set[str]:
    return {cfg.name for cfg in _model_configs()}


def _mlflow_ui_url() -> str:
    return os.environ.get("MLFLOW_UI_URL", os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))


@viewer.get("/", response_class=HTMLResponse)
def page(request: Request) -> Response:
    if not request.url.path.endswith("/"):  # relative links on the page need the trailing slash
        return RedirectResponse(f"{request.url.path}/", status_code=307)
    from mlplatform import reports_page
    from mlplatform.config import config_errors, settings
    from mlplatform.lake import default_lake

    env, lake, user = settings(), default_lake(), getattr(request.state, "airflow_user", None)
    reports = [reports_page.model_reports(lake, cfg, env.mlflow_tracking_uri, runs=_task_runs(user, cfg.name))
               for cfg in _model_configs()]
    nonce = reports_page.new_nonce()
    html = reports_page.render_page(reports, env.lake_uri, env.mlflow_tracking_uri, nonce=nonce,
                                    mlflow_ui=_mlflow_ui_url(), config_errors=config_errors())
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                       "Content-Security-Policy": reports_page.page_csp(nonce)})


def _task_runs(user, model: str):
    """The model's ingest, score and monitor task instances from Airflow's metadata database, or None when
    they cannot be read (no Airflow user in this request, or no database): the page then says so."""
    if user is None:
        return None
    try:
        from mlplatform import reports_page

        dag_ids = _readable_dag_ids(user, [f"{model}__{stage}" for stage in reports_page.RUN_DAGS])
        return _query_task_runs(dag_ids) if dag_ids else []
    except Exception as exc:  # the page must render without them
        log.warning("model reports: Airflow task instances of %s not readable: %s", model, exc)
        return None


def _readable_dag_ids(user, dag_ids: list[str]) -> list[str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    auth = get_auth_manager()
    return [dag_id for dag_id in dag_ids
            if auth.is_authorized_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE,
                                      details=DagDetails(id=dag_id), user=user)]


def _query_task_runs(dag_ids: list[str]) -> list:
    """Task instances with their run's days: the asset events it consumed, its ``ds`` param or logical date."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, association_table
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from mlplatform import reports_page

    with create_session() as session:
        instances = session.execute(
            select(TI.dag_id, TI.task_id, TI.run_id, TI.map_index, TI.state, TI.try_number, TI.start_date,
                   DagRun.id, DagRun.logical_date, DagRun.conf, DagRun.run_after)
            .join(DagRun, (DagRun.dag_id == TI.dag_id) & (DagRun.run_id == TI.run_id))
            .where(TI.dag_id.in_(dag_ids))).all()
        consumed = session.execute(
            select(association_table.c.dag_run_id, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.id == association_table.c.event_id)
            .join(DagRun, DagRun.id == association_table.c.dag_run_id)
            .where(DagRun.dag_id.in_(dag_ids))).all()
    extras: dict[int, list[dict]] = {}
    for run_pk, extra in consumed:
        extras.setdefault(run_pk, []).append(extra or {})
    return [reports_page.TaskRun(
        dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, state=str(ti.state) if ti.state else None,
        try_number=ti.try_number or 0, map_index=ti.map_index,
        days=reports_page.run_days(extras.get(ti.id, []), ti.conf, ti.logical_date),
        order=f"{ti.run_after.isoformat() if ti.run_after else ''} {ti.start_date.isoformat() if ti.start_date else ''}")
        for ti in instances]


@viewer.get("/static/{name}")
def static(name: str) -> Response:
    from mlplatform import reports_page

    file_name, payload = reports_page.plotly_js()
    if name != file_name:
        raise HTTPException(status_code=404, detail="Not found")
    return Response(payload, media_type="text/javascript",
                    headers={"Cache-Control": "private, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"})


@viewer.get("/{model}/{ds}/quarantine/{dataset}/reason.json")
def quarantine_reason(model: str, ds: str, dataset: str) -> Response:
    from mlplatform import reports_page
    from mlplatform.lake import default_lake

    try:
        payload = reports_page.quarantine_reason(default_lake(), _known_models(), model, ds, dataset)
    except reports_page.ReportNotFound:
        raise HTTPException(status_code=404, detail="Not found") from None
    return Response(payload, media_type="application/json",
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


@viewer.get("/{model}/{ds}/{file}")
def report(model: str, ds: str, file: str) -> Response:
    from mlplatform import reports_page
    from mlplatform.lake import default_lake

    try:
        payload, media_type = reports_page.served_report(default_lake(), _known_models(), model, ds, file)
    except reports_page.ReportNotFound:
        raise HTTPException(status_code=404, detail="Not found") from None
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if media_type.startswith("text/html"):
        # Evidently inlines the data's values in <script>: run the report in an opaque origin, without
        # the Airflow session, so a crafted category value cannot act as the viewer.
        headers["Content-Security-Policy"] = "sandbox allow-scripts"
    return Response(payload, media_type=media_type, headers=headers)


@app.get("/back/{model}", response_class=HTMLResponse)
def back(model: str) -> Response:
    """Where a report's back link points: a constant page that moves on to the reports page at once.

    A report runs sandboxed, in an opaque origin, so a navigation it starts is cross-site for the browser,
    which then withholds Airflow's SameSite=Lax session cookie from a framed page (inside the Airflow UI).
    This page needs no session and shows nothing; the navigation it starts is same-origin, so the reports
    page gets the cookie."""
    from mlplatform import reports_page

    try:
        html = reports_page.back_page(model)
    except reports_page.ReportNotFound:
        raise HTTPException(status_code=404, detail="Not found") from None
    return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'",
                                       "X-Content-Type-Options": "nosniff"})


app.include_router(viewer)


class MLPlatformPlugin(AirflowPlugin):
    name = "mlplatform"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Model reports"}]
    external_views = [
        {
            "name": "Model reports",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative to the UI's base URL, so it works behind a proxy
            "url_route": "model-reports",          # rendered inside the UI, at /plugin/model-reports
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "MLflow",
            # the registered models in model-training mode, not MLflow 3's GenAI home
            "href": f"{_mlflow_ui_url().rstrip('/')}/#/models?workflowType=machine_learning",
            "destination": "nav",
            "category": "browse",
        },
    ]
