"""The "Model reports" page in a real Airflow api-server, opened in real headless Chromium.

A model of its own (a copy of flight_delay under another name), a lake of its own with a few days of
report files (one day missing and quarantined), versions with search candidates in the session's MLflow
server, promotions through the promotion log (one with a hostile reason, then an alias moved by hand),
and one real ingest run that fails on a contract breach in the labels. The browser logs in with the
generated admin password and checks, as a user sees them: the three charts and the tables, the
calibration series and its labels, a gap in a chart line, the quarantined and the failed day with
their links, the MLflow links (against the real MLflow server and UI), and a report with its header
bar and back link, directly and inside the Airflow UI's iframe. Screenshots go to the test's
temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.unit.test_reports_page import HOSTILE_REASON, write_days, write_quarantine

REPO = Path(__file__).resolve().parents[2]
MODEL = "ui_reports_model"
GAP_DAY = "2013-03-09"      # no output at all, and its features quarantined
FAILED_DAY = "2013-03-16"   # a real ingest run whose labels breach their contract
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1440,1000"]
SLOW = 180  # seconds: the machine running this may be small and busy


@pytest.fixture(scope="module")
def page_data(local_servers, tmp_path_factory):
    """Models dir, lake, registry and Airflow runs for MODEL; returns what the api-server and the tests need."""
    import yaml

    from mlplatform.config import settings
    from mlplatform.lake import Lake
    from mlplatform import registry

    root = tmp_path_factory.mktemp("reports_page")
    models_dir = root / "models"
    models_dir.mkdir()
    raw = yaml.safe_load((REPO / "include" / "models" / "flight_delay.yaml").read_text())
    raw["name"] = MODEL
    raw["labels"]["contract"]["rows"] = {"min": 100000, "max": 200000}  # every day's labels breach it
    (models_dir / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    lake = Lake((root / "lake").as_uri())
    days = write_days(lake, MODEL, count=14, retrained_on=11, missing=(8,))
    assert days[8] == GAP_DAY
    write_quarantine(lake, MODEL, GAP_DAY)

    mlc = registry.client(settings().mlflow_tracking_uri)
    versions = _register_versions(mlc, [("2013-02-01", "initial", "0.7400"), ("2013-03-11", "drift", "0.7500")])
    _log_moves(lake, mlc)
    env = {"MLOPS_MODELS_DIR": str(models_dir), "MLOPS_LAKE_URI": lake.root_uri}
    _ingest_failing_day(env, FAILED_DAY)
    return {**env, "days": days, "versions": versions, "lake": lake}


def _register_versions(mlc, versions: list[tuple[str, str, str]]) -> dict[str, dict]:
    """Registry entries with their training (parent) runs and two search candidates (child runs) each."""
    experiment_id = mlc.create_experiment(MODEL)
    mlc.create_registered_model(MODEL)
    found = {}
    for cutoff, reason, auc in versions:
        parent = mlc.create_run(experiment_id, run_name=f"train-{cutoff}")
        children = [mlc.create_run(experiment_id, run_name=f"{rank:02d}-candidate",
                                   tags={"mlflow.parentRunId": parent.info.run_id}).info.run_id for rank in (1, 2)]
        version = mlc.create_model_version(MODEL, source=f"{parent.info.artifact_uri}/model", run_id=parent.info.run_id,
                                           tags={"cutoff_ds": cutoff, "trigger_reason": reason, "holdout_auc": auc})
        found[str(version.version)] = {"run_id": parent.info.run_id, "children": children,
                                       "experiment_id": experiment_id}
    return found


def _log_moves(lake, mlc) -> None:
    """Promote v1 and v2, roll back to v1 with a hostile reason, then a person moves the alias to v2 in
    MLflow and a task records that as an external move."""
    from mlplatform import promotion, registry

    for version, cutoff, action, reason in (("1", "2013-02-01", "promote", "promote in test"),
                                            ("2", "2013-03-11", "promote", "promote in test"),
                                            ("1", None, "rollback", HOSTILE_REASON)):
        seen = promotion.snapshot(lake, mlc, MODEL)
        evidence = {"cutoff_ds": cutoff, "challenger_auc": 0.75, "champion_auc": 0.74, "auc_gain": 0.01} if cutoff else {}
        promotion.move_champion(lake, mlc, MODEL, version, seen, action, "test:reports_page", reason, evidence)
    registry.set_alias(mlc, MODEL, registry.CHAMPION, "2")
    head = promotion.log_head(lake, MODEL)
    lake.create_exclusive(f"promotions/{MODEL}/{head + 1:08d}.json", json.dumps({
        "seq": head + 1, "model": MODEL, "action": "external_move", "from_version": "1", "to_version": "2",
        "actor": f"airflow:{MODEL}__score/test", "at": datetime.now(timezone.utc).isoformat(),
        "reason": "champion alias moved outside the platform"}).encode())


def _ingest_failing_day(env: dict, ds: str) -> None:
    """The model's real ingest DAG for ``ds`` through dag.test: the features land, the labels breach their
    contract, so ``ingest_labels`` fails (no retries) and its batch is quarantined."""
    from airflow.dag_processing.dagbag import DagBag

    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        dag = DagBag(str(REPO / "dags")).dags[f"{MODEL}__ingest"]
        run = dag.test(logical_date=datetime.fromisoformat(ds).replace(tzinfo=timezone.utc))
    finally:
        for key, value in previous.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"ingest_features": "success", "ingest_labels": "failed"}, states


@pytest.fixture(scope="module")
def api_server(local_servers, page_data, tmp_path_factory):
    """The real api-server with the repository's plugins folder; yields (base URL, admin password)."""
    from mlplatform.devstack.stack import VENV_BIN, Component, free_port, start, stop

    port = free_port()
    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    env = {**local_servers, "MLOPS_MODELS_DIR": page_data["MLOPS_MODELS_DIR"],
           "MLOPS_LAKE_URI": page_data["MLOPS_LAKE_URI"],
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    server = Component("airflow-api-server-reports", port,
                       [str(VENV_BIN / "airflow"), "api-server", "--port", str(port), "--workers", "1"])
    try:
        start(server, env, timeout=600)
        base = f"http://127.0.0.1:{port}"
        _wait_until_answering(f"{base}/api/v2/monitor/health")
        yield base, _admin_password(passwords)
    finally:
        stop(server, env)


def _wait_until_answering(url: str, timeout_s: float = SLOW) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _admin_password(passwords: Path) -> str:
    deadline = time.monotonic() + SLOW
    while not passwords.exists():
        assert time.monotonic() < deadline, f"the api-server wrote no password file at {passwords}"
        time.sleep(0.5)
    return json.loads(passwords.read_text())["admin"]


@pytest.fixture
def browser(tmp_path):
    assert os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), \
        "Debian's chromium and chromium-driver are needed: `make system-deps` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(SLOW)
    try:
        yield driver
    finally:
        driver.quit()


def _log_in(driver, base: str, password: str, next_path: str) -> None:
    """The page itself sends a browser without a session to Airflow's login form, and back."""
    driver.get(f"{base}{next_path}")
    wait = WebDriverWait(driver, SLOW)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: d.current_url.startswith(f"{base}{next_path}") and d.title == "Model reports")


def _charts_drawn(driver) -> list:
    """Chart containers in which plotly.js has drawn an SVG plot (all three, or the wait times out)."""
    WebDriverWait(driver, SLOW).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "div.chart svg.main-svg")) >= 3)
    return driver.find_elements(By.CSS_SELECTOR, "div.chart")


def _full_page_screenshot(driver, path: Path) -> None:
    """The whole page: the window is grown to the document's height (plus the window's own frame)."""
    height, frame = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(1440, min(max(height + frame, 1000), 5000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1440, 1000)
    assert path.stat().st_size > 10_000


def _csp_violations(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]]


def _click(driver, element) -> None:
    """Click a link as a user would, once it is scrolled clear of the table's sticky header."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _row(driver, ds: str):
    return driver.find_element(By.CSS_SELECTOR, f"section[data-model={MODEL}] table.days tr[data-ds='{ds}']")


def test_unauthenticated_requests_are_refused(api_server):
    base, _ = api_server
    for path in (f"{MODEL}/2013-03-01/summary.json", f"{MODEL}/{GAP_DAY}/quarantine/features/reason.json"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/model-reports/{path}", timeout=60)
        assert refused.value.code == 401
    with urllib.request.urlopen(f"{base}/model-reports/back/{MODEL}", timeout=60) as back:  # needs no session...
        page = back.read().decode()
    assert f'url=../#model-{MODEL}"' in page and "<table" not in page and "<script" not in page  # ...and shows nothing


def test_the_page_draws_its_charts_and_tables_despite_a_hostile_reason(api_server, browser, tmp_path):
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Model reports"
    assert len(_charts_drawn(browser)) == 3
    for table in ("days", "promotions", "versions"):
        assert browser.find_element(By.CSS_SELECTOR, f"section[data-model={MODEL}] table.{table}").is_displayed()
    log_table = browser.find_element(By.CSS_SELECTOR, "table.promotions").text
    assert "<!--<script> </script><b>not bold</b> &" in log_table  # shown as the text it is
    assert "external_move" in log_table and "rollback" in log_table
    assert browser.find_element(By.CSS_SELECTOR, f"section[data-model={MODEL}] .champion").get_attribute(
        "data-champion") == "2"  # moved by hand after the rollback
    assert _csp_violations(browser) == []
    _full_page_screenshot(browser, tmp_path / "model_reports.png")


def test_calibration_series_are_present_and_labelled(api_server, browser, tmp_path):
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    calibration = _charts_drawn(browser)[2]
    assert calibration.find_element(By.CSS_SELECTOR, ".gtitle").text == "Calibration: predicted vs realized late rate"
    legend = [e.text for e in calibration.find_elements(By.CSS_SELECTOR, ".legendtext")]
    assert legend == ["late rate (realized)", "mean predicted probability", "share scored ≥ 0.5 (decision threshold)"]
    header = browser.find_element(By.CSS_SELECTOR, "table.days thead").text
    assert "Mean predicted" in header and "(predicted)" not in header
    calibration.screenshot(str(tmp_path / "calibration_chart.png"))


def test_chart_lines_break_at_a_day_without_a_value(api_server, browser, tmp_path):
    """Plotly draws each unbroken stretch of a line as its own path (or moveto-started segment)."""
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    drift = _charts_drawn(browser)[0]
    effective_line = drift.find_elements(By.CSS_SELECTOR, ".scatterlayer .trace")[1]
    paths = [p.get_attribute("d") for p in effective_line.find_elements(By.CSS_SELECTOR, "path.js-line")]
    assert sum(d.count("M") for d in paths) == 2, paths  # before and after the quarantined day
    drift.screenshot(str(tmp_path / "drift_chart_with_gap.png"))


def test_a_quarantined_and_a_failed_day_are_listed_with_their_links(api_server, page_data, browser, tmp_path):
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    quarantined = _row(browser, GAP_DAY)
    assert quarantined.get_attribute("data-status") == "quarantined"
    reason_link = quarantined.find_element(By.CSS_SELECTOR, "a.quarantine-link")
    assert reason_link.text == "features quarantined: reason (JSON)"
    failed = _row(browser, FAILED_DAY)
    assert failed.get_attribute("data-status") == "failed" and "ingest.ingest_labels failed: log" in failed.text
    assert "labels quarantined: reason (JSON)" in failed.text
    assert _row(browser, "2013-03-15").get_attribute("data-status") == "not run"
    assert _row(browser, "2013-01-01").get_attribute("data-status") == "not run"  # the schedule's first day
    browser.execute_script("arguments[0].scrollIntoView()", failed)
    browser.find_element(By.CSS_SELECTOR, "table.days").screenshot(str(tmp_path / "days_table.png"))

    _click(browser, reason_link)
    WebDriverWait(browser, SLOW).until(lambda d: d.current_url.endswith(
        f"/model-reports/{MODEL}/{GAP_DAY}/quarantine/features/reason.json"))
    reason = json.loads(browser.find_element(By.TAG_NAME, "body").text)
    assert reason["rule"] == "min" and reason["column"] == "DISTANCE"

    browser.back()
    log_link = _row(browser, FAILED_DAY).find_element(By.CSS_SELECTOR, "a.task-log")
    assert log_link.get_attribute("target") == "_top"
    _click(browser, log_link)
    WebDriverWait(browser, SLOW).until(lambda d: f"/dags/{MODEL}__ingest/runs/" in d.current_url)
    WebDriverWait(browser, SLOW).until(lambda d: "ingest_labels" in d.find_element(By.TAG_NAME, "body").text)
    assert "/tasks/ingest_labels" in browser.current_url and "try_number=1" in browser.current_url
    WebDriverWait(browser, SLOW).until(lambda d: "Failed" in d.find_element(By.TAG_NAME, "body").text
                                       or "failed" in d.find_element(By.TAG_NAME, "body").text)
    browser.save_screenshot(str(tmp_path / "airflow_task_log.png"))


def _mlflow_links(driver) -> dict[str, str]:
    """href -> link text, for every MLflow link of the model's section."""
    links = driver.find_elements(By.CSS_SELECTOR, f"section[data-model={MODEL}] a[href*='/#/']")
    return {a.get_attribute("href"): a.text for a in links}


def _mlflow_api(tracking_uri: str, path: str, **query) -> dict:
    url = f"{tracking_uri}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def _check_mlflow_route(tracking_uri: str, href: str) -> str:
    """The link answers 200 and names entities the MLflow server has; returns the route's kind."""
    with urllib.request.urlopen(href, timeout=60) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
    route = urllib.parse.unquote(href.split("#", 1)[1])
    if match := re.fullmatch(r"/models/([^/]+)/versions/(\d+)", route):
        _mlflow_api(tracking_uri, "model-versions/get", name=match[1], version=match[2])
        return "version"
    if match := re.fullmatch(r"(?:/experiments/(\d+))?/runs/(\w+)", route):
        run = _mlflow_api(tracking_uri, "runs/get", run_id=match[2])["run"]
        assert match[1] in (None, run["info"]["experiment_id"])
        return "run"
    if match := re.fullmatch(r"/compare-runs\?runs=(.+)&experiments=(.+)", route):
        for run_id in json.loads(match[1]):
            assert _mlflow_api(tracking_uri, "runs/get", run_id=run_id)["run"]["data"]["tags"]
        for experiment_id in json.loads(match[2]):
            _mlflow_api(tracking_uri, "experiments/get", experiment_id=experiment_id)
        return "compare"
    assert route == "/models", route
    return "models"


def test_mlflow_links_resolve_against_the_real_mlflow_server(api_server, page_data, local_servers, browser, tmp_path):
    base, password = api_server
    tracking_uri = local_servers["MLFLOW_TRACKING_URI"]
    _log_in(browser, base, password, "/model-reports/")
    header_link = browser.find_element(By.CSS_SELECTOR, "a.mlflow-home").get_attribute("href")
    links = _mlflow_links(browser)
    kinds = [_check_mlflow_route(tracking_uri, href) for href in [header_link, *links]]
    assert {"models", "version", "run", "compare"} <= set(kinds)
    v2 = page_data["versions"]["2"]
    compare = next(href for href in links if "compare-runs" in href)
    assert sorted(json.loads(re.search(r"runs=([^&]+)", urllib.parse.unquote(compare))[1])) == sorted(v2["children"])

    # The MLflow UI itself shows what each kind of link names.
    for name, href, expected in (("mlflow_version", f"{tracking_uri}/#/models/{MODEL}/versions/2", "Version 2"),
                                 ("mlflow_run", next(h for h in links if "/runs/" in h), "train-2013-03-11"),
                                 ("mlflow_compare", compare, "01-candidate")):
        browser.get(href)
        WebDriverWait(browser, SLOW).until(lambda d: expected in d.find_element(By.TAG_NAME, "body").text)
        browser.save_screenshot(str(tmp_path / f"{name}.png"))


def test_a_report_shows_its_header_and_goes_back(api_server, page_data, browser, tmp_path):
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    ds = page_data["days"][12]  # scored by v2
    _click(browser, _row(browser, ds).find_element(By.CSS_SELECTOR, "a.report-link[href$='drift_report.html']"))
    WebDriverWait(browser, SLOW).until(lambda d: d.current_url.endswith(f"/model-reports/{MODEL}/{ds}/drift_report.html"))
    assert browser.title == f"Drift report · {MODEL} · {ds}"
    bar = browser.find_element(By.CSS_SELECTOR, ".mlplatform-report-header")
    assert all(text in bar.text for text in ("Drift report", MODEL, ds, "scored by champion v2", "← Model reports"))
    report_heading = browser.find_element(By.TAG_NAME, "h1")
    assert report_heading.text == f"Drift report {MODEL} {ds}"  # the report itself follows the bar
    assert bar.is_displayed() and bar.location["y"] + bar.size["height"] <= report_heading.location["y"]
    browser.save_screenshot(str(tmp_path / "report_with_header.png"))
    bar.find_element(By.CSS_SELECTOR, "a.mlplatform-back").click()
    WebDriverWait(browser, SLOW).until(lambda d: d.current_url.endswith(f"/model-reports/#model-{MODEL}")
                                       and d.title == "Model reports")
    assert len(_charts_drawn(browser)) == 3


def test_model_reports_in_the_airflow_ui(api_server, page_data, browser, tmp_path):
    """The nav entry's page: the Airflow UI with the report page in its iframe; a report opens in the frame
    and its back link returns there."""
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    browser.get(f"{base}/plugin/model-reports")
    frame = WebDriverWait(browser, SLOW).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Model reports']")))
    browser.switch_to.frame(frame)
    try:  # WebDriver's title is the top window's: ask the frame's document
        WebDriverWait(browser, SLOW).until(lambda d: d.execute_script("return document.title") == "Model reports")
        assert len(_charts_drawn(browser)) == 3
        ds = page_data["days"][0]
        _click(browser, _row(browser, ds).find_element(By.CSS_SELECTOR, "a.report-link[href$='performance_report.html']"))
        WebDriverWait(browser, SLOW).until(
            lambda d: d.execute_script("return document.title") == f"Performance report · {MODEL} · {ds}")
        assert "scored by champion v1" in browser.find_element(By.CSS_SELECTOR, ".mlplatform-report-header").text
        browser.switch_to.default_content()
        browser.save_screenshot(str(tmp_path / "airflow_ui_report.png"))
        browser.switch_to.frame(frame)
        browser.find_element(By.CSS_SELECTOR, "a.mlplatform-back").click()
        WebDriverWait(browser, SLOW).until(lambda d: d.execute_script("return document.title") == "Model reports")
        assert len(_charts_drawn(browser)) == 3
    finally:
        browser.switch_to.default_content()
    # The Airflow UI stayed around the frame (it mirrors the frame's address into its own, for deep links).
    assert browser.current_url.startswith(f"{base}/plugin/model-reports")
    assert browser.find_element(By.CSS_SELECTOR, "iframe[title='Model reports']").is_displayed()
    browser.save_screenshot(str(tmp_path / "airflow_ui_model_reports.png"))
    assert _csp_violations(browser) == []


def test_report_days_and_files_on_s3(s3_endpoint):
    """One listing and one batched fetch of summaries work on an object store too; so do the day statuses."""
    from mlplatform import reports_page
    from mlplatform.lake import Lake

    lake = Lake(f"{s3_endpoint}/reports-page")
    days = write_days(lake, MODEL, count=4, retrained_on=2, missing=(1,))
    write_quarantine(lake, MODEL, days[1])
    found = reports_page.report_days(lake, MODEL)
    assert [d.ds for d in found] == [days[0], *days[2:]] and all(d.drift_share is not None for d in found)
    assert found[0].realized_auc is not None and found[0].mean_score is not None
    assert "performance_report.html" in found[0].files
    outputs = reports_page.lake_outputs(lake, MODEL, found)
    assert outputs.predictions == set(days) - {days[1]} and outputs.quarantines == {days[1]: ("features",)}
    payload, _ = reports_page.served_report(lake, {MODEL}, MODEL, days[0], "drift_report.html")
    assert f"Drift report {MODEL} {days[0]}".encode() in payload and b"mlplatform-report-header" in payload
