"""The "Model reports" page in a real Airflow api-server, opened in real headless Chromium.

A model of its own (a copy of flight_delay under another name) and a lake of its own holding six weeks of
real monitored days: the drift-triggered replay of Feb 1 - Mar 14 2013 recorded by
``tests/integration/reports_page_replay.py``, written as the monitor writes them, with one day missing and
quarantined. The session's MLflow server holds the replay's three trainings as versions with search
candidates, in a training experiment made by the platform's own code; promotions go through the promotion
log (one rollback with a hostile reason, then an alias moved by hand), and one real ingest run fails on a
contract breach in the labels. The browser logs in with the generated admin password and checks, as a user
sees them: the three charts and the tables, the calibration series and its labels, a gap in a chart line,
the quarantined and the failed day with their links, JSON links saying so, the MLflow links (against the
real MLflow server and UI), the training experiment opening in model-training mode on its holdout metrics,
and a report with its header bar and back link, directly and inside the Airflow UI's iframe. Screenshots go
to the test's temporary directory; ``reports_page_1280.png`` is the README's ``docs/reports_page.png``.
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

from tests.integration.reports_page_replay import load as load_replay
from tests.unit.test_reports_page import HOSTILE_REASON, report_html, write_days, write_partition, write_quarantine

REPO = Path(__file__).resolve().parents[2]
MODEL = "ui_reports_model"
GAP_DAY = "2013-03-09"      # no output at all, and its features quarantined
FAILED_DAY = "2013-03-16"   # a real ingest run whose labels breach their contract
UNLABELLED_DAYS = 2         # the last days' outcomes are not in yet
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
    replay = load_replay()
    versions = {t["cutoff_ds"]: str(number) for number, t in enumerate(replay["trainings"], start=1)}
    days = _write_replayed_days(lake, replay, versions)
    write_quarantine(lake, MODEL, GAP_DAY)

    mlc = registry.client(settings().mlflow_tracking_uri)
    registered = _register_versions(mlc, replay["trainings"])
    _log_moves(lake, mlc, replay["trainings"])
    env = {"MLOPS_MODELS_DIR": str(models_dir), "MLOPS_LAKE_URI": lake.root_uri}
    _ingest_failing_day(env, FAILED_DAY)
    return {**env, "days": days, "versions": registered, "lake": lake, "scored_by": {
        d["ds"]: versions[d["champion"]] for d in replay["days"]}}


def _write_replayed_days(lake, replay: dict, versions: dict[str, str]) -> list[str]:
    """Each replayed day's files as the monitor writes them (``summary.json``; ``performance.json`` once its
    labels are in, the next day), its reports and partitions; GAP_DAY has none. Returns the days written."""
    from mlplatform.dates import shift

    holdout_auc = {t["cutoff_ds"]: t["holdout_auc"] for t in replay["trainings"]}
    written = []
    for i, day in enumerate(replay["days"]):
        ds, version = day["ds"], versions[day["champion"]]
        if ds == GAP_DAY:
            continue
        columns = [{"column": name, "drifted": drifted, "effect_size": effect}
                   for name, (drifted, effect) in day["columns"].items()]
        summary = {"model": MODEL, "ds": ds, "model_version": version, "rows": day["rows"],
                   "drift_share": day["drift_share"], "columns": columns,
                   "observation": {"ds": ds, "rows": day["rows"], "columns": columns, "realized_auc": None,
                                   "labelled_rows": 0},
                   "decision": {"action": day["action"], "reason": day["reason"], "message": "",
                                "effective_share": day["effective_share"],
                                "validation_auc": holdout_auc[day["champion"]],
                                "policy": {"share": replay["drift_share_threshold"]}}}
        rdir = f"reports/{MODEL}/ds={ds}"
        if i < len(replay["days"]) - UNLABELLED_DAYS:
            metrics = {"roc_auc": day["roc_auc"], "log_loss": day["log_loss"], "brier": day["brier"],
                       "late_rate": day["positive_rate"], "mean_score": day["mean_score"],
                       "predicted_late_rate": day["predicted_late_rate"], "rows": day["labelled_rows"],
                       "validation_auc": holdout_auc[day["champion"]]}
            lake.write_json(f"{rdir}/performance.json", {"model": MODEL, "ds": ds, "model_version": version,
                                                         "labels_known_at": shift(ds, 1), "metrics": metrics})
            lake.write_bytes(f"{rdir}/performance_report.html", report_html(f"Performance report {MODEL} {ds}"))
        lake.write_bytes(f"{rdir}/drift_report.html", report_html(f"Drift report {MODEL} {ds}"))
        lake.write_json(f"{rdir}/evidently.json", {"metrics": []})
        lake.write_json(f"{rdir}/summary.json", summary)
        write_partition(lake, "datasets", MODEL, ds)
        write_partition(lake, "predictions", MODEL, ds)
        written.append(ds)
    return written


def _register_versions(mlc, trainings: list[dict]) -> dict[str, dict]:
    """One registry version per training, with its training (parent) run in the training experiment the
    platform makes, named and logged as ``registry.log_training_run`` does, and two search candidates (child
    runs, one per family)."""
    from mlplatform import registry
    from mlplatform.training import logged_params

    experiment_id = registry.training_experiment(MODEL).experiment_id
    mlc.create_registered_model(MODEL)
    candidates = (("hist_gradient_boosting", {"learning_rate": 0.06, "max_iter": 200}), ("logistic_regression", {"C": 0.1}))
    found = {}
    for training in trainings:
        cutoff = training["cutoff_ds"]
        parent = mlc.create_run(experiment_id, run_name=f"train-{cutoff}",
                                tags={"cutoff_ds": cutoff, "trigger_reason": training["reason"]})
        _log(mlc, parent.info.run_id, {registry.HOLDOUT_METRICS["roc_auc"]: training["holdout_auc"]},
             logged_params(*candidates[0]))
        children = []
        for rank, (family, params) in enumerate(candidates, start=1):
            child = mlc.create_run(experiment_id, run_name=f"{rank:02d}-{family}",
                                   tags={"mlflow.parentRunId": parent.info.run_id, "family": family})
            _log(mlc, child.info.run_id, {registry.CV_AUC: training["holdout_auc"] - 0.01 * rank},
                 logged_params(family, params))
            children.append(child.info.run_id)
        version = mlc.create_model_version(MODEL, source=f"{parent.info.artifact_uri}/model", run_id=parent.info.run_id,
                                           tags={"cutoff_ds": cutoff, "trigger_reason": training["reason"],
                                                 "holdout_auc": f"{training['holdout_auc']:.6f}",
                                                 "promotion_decision": training["gate_reason"]})
        found[str(version.version)] = {"run_id": parent.info.run_id, "children": children,
                                       "experiment_id": experiment_id, "cutoff_ds": cutoff}
    return found


def _log(mlc, run_id: str, metrics: dict, params: dict) -> None:
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    mlc.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                  params=[Param(k, str(v)) for k, v in params.items()])
    mlc.set_terminated(run_id)


def _log_moves(lake, mlc, trainings: list[dict]) -> None:
    """Promote v1 and v2 as the replay's gate did, roll back to v1 with a hostile reason, then a person
    moves the alias to v2 in MLflow and a task records that as an external move."""
    from mlplatform import promotion, registry

    for version, training in enumerate(trainings[:2], start=1):
        seen = promotion.snapshot(lake, mlc, MODEL)
        evidence = {"cutoff_ds": training["cutoff_ds"], "challenger_auc": training["holdout_auc"],
                    "champion_auc": training["champion_holdout_auc"], "auc_gain": training["auc_gain"]}
        promotion.move_champion(lake, mlc, MODEL, str(version), seen, "promote", f"airflow:{MODEL}__train/test",
                                training["gate_reason"], evidence)
    promotion.move_champion(lake, mlc, MODEL, "1", promotion.snapshot(lake, mlc, MODEL), "rollback",
                            "test:reports_page", HOSTILE_REASON)
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


def _full_page_screenshot(driver, path: Path, width: int = 1440) -> None:
    """The whole page at ``width``: the window is grown to the document's height (plus the window's frame),
    once plotly has redrawn the charts for the new width."""
    driver.set_window_size(width, 1000)
    WebDriverWait(driver, SLOW).until(_charts_fit)
    height, frame = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]")
    driver.set_window_size(width, min(max(height + frame, 1000), 5000))
    WebDriverWait(driver, SLOW).until(_charts_fit)
    driver.save_screenshot(str(path))
    driver.set_window_size(1440, 1000)
    assert path.stat().st_size > 10_000


def _charts_fit(driver) -> bool:
    return driver.execute_script("""return [...document.querySelectorAll("div.chart")].every(chart => {
        const plot = chart.querySelector("svg.main-svg");
        return !plot || Math.abs(plot.getBoundingClientRect().width - chart.getBoundingClientRect().width) <= 3;
    });""")


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
    json_links = browser.find_elements(By.CSS_SELECTOR, f"section[data-model={MODEL}] a[href$='.json']")
    assert len(json_links) > 40 and all("(JSON)" in a.get_attribute("textContent") for a in json_links)
    assert _csp_violations(browser) == []
    _full_page_screenshot(browser, tmp_path / "model_reports.png")
    _full_page_screenshot(browser, tmp_path / "reports_page_1280.png", width=1280)  # the README's screenshot


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
    """The link answers 200, opens the UI in model-training mode and names entities the MLflow server has;
    returns the route's kind."""
    with urllib.request.urlopen(href, timeout=60) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
    route, _, query_text = href.split("#", 1)[1].partition("?")
    query = {key: values[0] for key, values in urllib.parse.parse_qs(query_text).items()}
    assert query.pop("workflowType") == "machine_learning", href
    if match := re.fullmatch(r"/models/([^/]+)/versions/(\d+)", route):
        _mlflow_api(tracking_uri, "model-versions/get", name=match[1], version=match[2])
        return "version"
    if match := re.fullmatch(r"(?:/experiments/(\d+))?/runs/(\w+)", route):
        run = _mlflow_api(tracking_uri, "runs/get", run_id=match[2])["run"]
        assert match[1] in (None, run["info"]["experiment_id"])
        return "run"
    if match := re.fullmatch(r"/experiments/(\d+)/runs", route):
        tags = _experiment_tags(tracking_uri, match[1])
        assert f"mlflow.sharedViewState.{query.pop('viewStateShareKey')}" in tags
        return "trainings"
    if route == "/compare-runs":
        for run_id in json.loads(query.pop("runs")):
            assert _mlflow_api(tracking_uri, "runs/get", run_id=run_id)["run"]["data"]["tags"]
        for experiment_id in json.loads(query.pop("experiments")):
            _mlflow_api(tracking_uri, "experiments/get", experiment_id=experiment_id)
        return "compare"
    assert route == "/models" and not query, route
    return "models"


def _experiment_tags(tracking_uri: str, experiment_id: str) -> dict[str, str]:
    experiment = _mlflow_api(tracking_uri, "experiments/get", experiment_id=experiment_id)["experiment"]
    return {tag["key"]: tag["value"] for tag in experiment.get("tags", [])}


def test_mlflow_links_resolve_against_the_real_mlflow_server(api_server, page_data, local_servers, browser, tmp_path):
    base, password = api_server
    tracking_uri = local_servers["MLFLOW_TRACKING_URI"]
    _log_in(browser, base, password, "/model-reports/")
    header_link = browser.find_element(By.CSS_SELECTOR, "a.mlflow-home").get_attribute("href")
    links = _mlflow_links(browser)
    kinds = [_check_mlflow_route(tracking_uri, href) for href in [header_link, *links]]
    assert {"models", "version", "run", "compare", "trainings"} <= set(kinds)
    v2 = page_data["versions"]["2"]
    compare = next(href for href in links if "compare-runs" in href)
    assert sorted(json.loads(re.search(r"runs=([^&]+)", urllib.parse.unquote(compare))[1])) == sorted(v2["children"])

    # The MLflow UI itself shows what each kind of link names.
    for name, href, expected in (("mlflow_version", next(h for h in links if "/versions/2?" in h), "Version 2"),
                                 ("mlflow_run", next(h for h in links if "/runs/" in h), "train-2013-03-01"),
                                 ("mlflow_compare", compare, "02-logistic_regression")):
        browser.get(href)
        WebDriverWait(browser, SLOW).until(lambda d: expected in d.find_element(By.TAG_NAME, "body").text)
        browser.save_screenshot(str(tmp_path / f"{name}.png"))


def test_the_training_experiment_opens_in_model_training_mode(api_server, page_data, local_servers, browser,
                                                              tmp_path):
    """Tagged for model training; its link opens the runs (not traces) with the holdout metrics as columns."""
    base, password = api_server
    tracking_uri = local_servers["MLFLOW_TRACKING_URI"]
    experiment_id = page_data["versions"]["1"]["experiment_id"]
    tags = _experiment_tags(tracking_uri, experiment_id)
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    _log_in(browser, base, password, "/model-reports/")
    trainings = browser.find_element(By.CSS_SELECTOR, f"section[data-model={MODEL}] a.mlflow-trainings")
    assert trainings.text == "all trainings in MLflow"
    browser.get(trainings.get_attribute("href"))
    wait = WebDriverWait(browser, SLOW)
    wait.until(lambda d: "metrics.`holdout.auc`" in _runs_table_columns(d))
    assert f"/experiments/{experiment_id}/runs" in browser.current_url  # not sent on to traces or the overview
    assert "workflowType=machine_learning" in browser.current_url
    columns = _runs_table_columns(browser)  # those in view, left to right
    shown = [name for name in columns.values() if name]
    assert shown[:3] == ["Run Name", "Created", "holdout.auc"] and "family" in shown, columns  # metrics first
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Trainings: holdout metrics" in body and "Model registry" in body  # the view, and the training nav
    assert "Observability" not in body and "Token Usage" not in body  # nothing of the GenAI mode
    wait.until(lambda d: all(cutoff in d.find_element(By.TAG_NAME, "body").text
                             for cutoff in ("train-2013-02-01", "train-2013-03-01", "train-2013-03-11")))
    browser.save_screenshot(str(tmp_path / "mlflow_trainings.png"))


def _runs_table_columns(driver) -> dict[str, str]:
    """Column id -> header text of the MLflow runs table's columns in view, left to right."""
    cells = driver.find_elements(By.CSS_SELECTOR, ".ag-header-cell[col-id]")
    cells.sort(key=lambda cell: cell.location["x"])
    return {cell.get_attribute("col-id"): cell.text for cell in cells}


def test_a_report_shows_its_header_and_goes_back(api_server, page_data, browser, tmp_path):
    base, password = api_server
    _log_in(browser, base, password, "/model-reports/")
    ds = "2013-03-12"
    assert page_data["scored_by"][ds] == "2"
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
        assert page_data["scored_by"][ds] == "1"
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
