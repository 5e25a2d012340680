"""The "Model reports" page in a real Airflow api-server, opened in real headless Chromium.

A model of its own (a copy of flight_delay under another name), a lake of its own with a few days of
report files, versions in the session's MLflow server and promotions through the promotion log. The
browser logs in with the generated admin password, opens the page inside the Airflow UI (the nav
entry's iframe) and directly, saves screenshots, checks the title and the charts, and follows a
report link to the report itself.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.unit.test_reports_page import write_days

REPO = Path(__file__).resolve().parents[2]
MODEL = "ui_reports_model"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1440,1000"]
SLOW = 180  # seconds: the machine running this may be small and busy


@pytest.fixture(scope="module")
def page_data(local_servers, tmp_path_factory):
    """Models dir, lake and registry for MODEL; returns the environment the api-server needs."""
    from mlplatform import promotion, registry
    from mlplatform.config import settings
    from mlplatform.lake import Lake

    root = tmp_path_factory.mktemp("reports_page")
    models_dir = root / "models"
    models_dir.mkdir()
    yaml_text = (REPO / "include" / "models" / "flight_delay.yaml").read_text()
    (models_dir / f"{MODEL}.yaml").write_text(yaml_text.replace("name: flight_delay", f"name: {MODEL}", 1))
    lake = Lake((root / "lake").as_uri())
    days = write_days(lake, MODEL, count=14, retrained_on=11)

    mlc = registry.client(settings().mlflow_tracking_uri)
    _register_versions(mlc, [("2013-02-01", "initial", "0.7400"), ("2013-03-11", "drift", "0.7500")])
    for version, cutoff, action in (("1", "2013-02-01", "promote"), ("2", "2013-03-11", "promote"),
                                    ("1", None, "rollback")):
        seen = promotion.snapshot(lake, mlc, MODEL)
        evidence = {"cutoff_ds": cutoff, "challenger_auc": 0.75, "champion_auc": 0.74, "auc_gain": 0.01} if cutoff else {}
        promotion.move_champion(lake, mlc, MODEL, version, seen, action, "test:reports_page", f"{action} in test",
                                evidence)
    return {"MLOPS_MODELS_DIR": str(models_dir), "MLOPS_LAKE_URI": lake.root_uri, "days": days}


def _register_versions(mlc, versions: list[tuple[str, str, str]]) -> None:
    """Registry entries only: the page reads versions and tags, never the model artifacts."""
    experiment_id = mlc.create_experiment(MODEL)
    mlc.create_registered_model(MODEL)
    for cutoff, reason, auc in versions:
        run = mlc.create_run(experiment_id)
        mlc.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                 tags={"cutoff_ds": cutoff, "trigger_reason": reason, "holdout_auc": auc})


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
    import json

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
    """Chart containers in which plotly.js has drawn an SVG plot."""
    WebDriverWait(driver, SLOW).until(lambda d: d.find_elements(By.CSS_SELECTOR, "div.chart svg.main-svg"))
    return driver.find_elements(By.CSS_SELECTOR, "div.chart")


def _full_page_screenshot(driver, path: Path) -> None:
    """The whole page: the window is grown to the document's height (plus the window's own frame)."""
    height, frame = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(1440, min(max(height + frame, 1000), 5000))
    driver.save_screenshot(str(path))


def test_unauthenticated_requests_are_refused(api_server):
    base, _ = api_server
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/model-reports/{MODEL}/2013-03-01/summary.json", timeout=60)
    assert refused.value.code == 401


def test_model_reports_page_in_chromium(api_server, page_data, browser, tmp_path):
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")

    assert browser.find_element(By.TAG_NAME, "h1").text == "Model reports"
    charts = _charts_drawn(browser)
    assert len(charts) == 3
    champion = browser.find_element(By.CSS_SELECTOR, f"section[data-model={MODEL}] .champion")
    assert champion.get_attribute("data-champion") == "1"  # after the rollback
    assert "rollback" in browser.find_element(By.CSS_SELECTOR, "table.promotions").text
    _full_page_screenshot(browser, tmp_path / "model_reports.png")
    assert (tmp_path / "model_reports.png").stat().st_size > 10_000

    ds = page_data["days"][0]
    browser.find_element(By.CSS_SELECTOR, f"tr[data-ds='{ds}'] a.report-link[href$='drift_report.html']").click()
    WebDriverWait(browser, SLOW).until(lambda d: d.current_url.endswith(f"/model-reports/{MODEL}/{ds}/drift_report.html"))
    assert browser.title == f"Drift report {MODEL} {ds}"
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Drift report {MODEL} {ds}"


def test_model_reports_in_the_airflow_ui(api_server, browser, tmp_path):
    """The nav entry's page: the Airflow UI with the report page in its iframe."""
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    browser.get(f"{base}/plugin/model-reports")
    frame = WebDriverWait(browser, SLOW).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Model reports']")))
    browser.switch_to.frame(frame)
    try:  # WebDriver's title is the top window's: ask the frame's document
        WebDriverWait(browser, SLOW).until(lambda d: d.execute_script("return document.title") == "Model reports")
        assert len(_charts_drawn(browser)) == 3
    finally:
        browser.switch_to.default_content()
        browser.save_screenshot(str(tmp_path / "airflow_ui_model_reports.png"))
    assert (tmp_path / "airflow_ui_model_reports.png").stat().st_size > 10_000


def test_report_days_and_files_on_s3(s3_endpoint):
    """One listing and one batched fetch of summaries work on an object store too."""
    from mlplatform import reports_page
    from mlplatform.lake import Lake

    lake = Lake(f"{s3_endpoint}/reports-page")
    days = write_days(lake, MODEL, count=4, retrained_on=2)
    found = reports_page.report_days(lake, MODEL)
    assert [d.ds for d in found] == days and all(d.drift_share is not None for d in found)
    assert found[0].realized_auc is not None and "performance_report.html" in found[0].files
    payload, _ = reports_page.report_file(lake, {MODEL}, MODEL, days[0], "drift_report.html")
    assert f"Drift report {MODEL} {days[0]}".encode() in payload
