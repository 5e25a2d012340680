"""Airflow UI additions for the platform: the "Model reports" page and a link to the MLflow UI.

The page is a FastAPI app mounted by the api-server at ``/model-reports`` and embedded in the UI
(an iframe at ``/plugin/model-reports``) by an external view in the navigation bar:

- ``GET /model-reports/``: every configured model's days and reports, trend charts, champion and
  promotion log (rendered by ``mlplatform.reports_page``), and a notice for each model file that
  failed validation. Model files are re-read when they change, so a new, changed or removed model
  appears here, and in the report routes, without restarting the api-server;
- ``GET /model-reports/{model}/{ds}/{file}``: one report file from the lake, ``file`` being one of
  ``reports_page.REPORT_FILES``;
- ``GET /model-reports/static/plotly-<version>.min.js``: plotly.js from the installed plotly package.

Airflow does not protect plugin FastAPI apps, so every route here requires the Airflow session
itself: the UI's JWT cookie (or an ``Authorization: Bearer`` token) checked by the auth manager,
which must allow the user the ``WEBSITE`` view. A browser without a session is sent to the login
page and back.
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/model-reports"
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


app = FastAPI(title="Model reports", docs_url=None, redoc_url=None, openapi_url=None,
              dependencies=[Depends(require_viewer)])


@app.exception_handler(HTTPException)
async def _login_or_error(request: Request, exc: HTTPException) -> Response:
    """A browser without a valid session goes to the login page, and comes back here after it."""
    wants_html = "text/html" in request.headers.get("accept", "")
    if exc.status_code == 401 and request.method == "GET" and wants_html:
        from airflow.api_fastapi.app import get_auth_manager

        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=307)
    return Response(content=str(exc.detail), status_code=exc.status_code, media_type="text/plain",
                    headers=getattr(exc, "headers", None))


def _known_models() -> dict[str, str]:
    from mlplatform.config import model_configs

    return {cfg.name: cfg.description for cfg in model_configs()}


@app.get("/", response_class=HTMLResponse)
def page(request: Request) -> Response:
    if not request.url.path.endswith("/"):  # relative links on the page need the trailing slash
        return RedirectResponse(f"{request.url.path}/", status_code=307)
    from mlplatform import reports_page
    from mlplatform.config import config_errors, settings
    from mlplatform.lake import default_lake

    env, lake = settings(), default_lake()
    reports = [reports_page.model_reports(lake, name, description, env.mlflow_tracking_uri)
               for name, description in _known_models().items()]
    html = reports_page.render_page(reports, env.lake_uri, env.mlflow_tracking_uri, config_errors=config_errors())
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@app.get("/static/{name}")
def static(name: str) -> Response:
    from mlplatform import reports_page

    file_name, payload = reports_page.plotly_js()
    if name != file_name:
        raise HTTPException(status_code=404, detail="Not found")
    return Response(payload, media_type="text/javascript",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


@app.get("/{model}/{ds}/{file}")
def report(model: str, ds: str, file: str) -> Response:
    from mlplatform import reports_page
    from mlplatform.lake import default_lake

    try:
        payload, media_type = reports_page.report_file(default_lake(), set(_known_models()), model, ds, file)
    except reports_page.ReportNotFound:
        raise HTTPException(status_code=404, detail="Not found") from None
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if media_type.startswith("text/html"):
        # Evidently inlines the data's values in <script>: run the report in an opaque origin, without
        # the Airflow session, so a crafted category value cannot act as the viewer.
        headers["Content-Security-Policy"] = "sandbox allow-scripts"
    return Response(payload, media_type=media_type, headers=headers)


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
            "href": os.environ.get("MLFLOW_UI_URL", os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")),
            "destination": "nav",
            "category": "browse",
        },
    ]
