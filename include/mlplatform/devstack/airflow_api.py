"""A small client for Airflow 3's REST API (/api/v2), used by the replay driver, the demo and the tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

FINISHED = {"success", "failed"}
PAGE = 100  # the API's default [api] maximum_page_limit: a larger limit is silently cut down to it


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        resp = requests.post(f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30)
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    @classmethod
    def local_admin(cls, base_url: str, airflow_home: Path, username: str = "admin") -> AirflowApi:
        """Log in as the local admin whose password the simple auth manager generated."""
        passwords = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        return cls(base_url, username, passwords[username])

    def get(self, path: str, **params) -> dict:
        resp = self.session.get(f"{self.base_url}/api/v2{path}", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(f"{self.base_url}/api/v2{path}", json=body, timeout=60)

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            known = {d["dag_id"] for d in self.get("/dags", limit=1000)["dags"]}
            if set(dag_ids) <= known:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs not parsed in {timeout}s: {sorted(set(dag_ids) - known)}")
            time.sleep(2)

    def backfill(self, dag_id: str, from_date: str, to_date: str, max_active_runs: int = 3, attempts: int = 5,
                 wait_for_open: float = 300) -> dict:
        """Create a backfill. On SQLite the endpoint answers 503 when the database is locked; retry then. It answers
        409 while another backfill of the DAG is open; wait up to ``wait_for_open`` seconds for it to close (the
        scheduler closes one when its runs have finished, one that created no run only after two minutes)."""
        body = self._backfill_body(dag_id, from_date, to_date, max_active_runs)
        deadline, attempt = time.monotonic() + wait_for_open, 0
        while True:
            resp = self.post("/backfills", body)
            if resp.status_code == 503 and attempt < attempts - 1:
                attempt += 1
                time.sleep(2 * attempt)
            elif resp.status_code == 409 and time.monotonic() < deadline:
                time.sleep(5)
            else:
                resp.raise_for_status()
                return resp.json()

    def backfill_days(self, dag_id: str, from_date: str, to_date: str) -> list[str]:
        """The days a backfill would run (a dry run): days without a run, and days whose run failed."""
        resp = self.post("/backfills/dry_run", self._backfill_body(dag_id, from_date, to_date, 1))
        resp.raise_for_status()
        return sorted(run["logical_date"][:10] for run in resp.json()["backfills"])

    @staticmethod
    def _backfill_body(dag_id: str, from_date: str, to_date: str, max_active_runs: int) -> dict:
        return {"dag_id": dag_id, "from_date": f"{from_date}T00:00:00Z", "to_date": f"{to_date}T00:00:00Z",
                "max_active_runs": max_active_runs, "reprocess_behavior": "failed"}

    def trigger(self, dag_id: str, run_id: str, logical_date: str | None, conf: dict) -> bool:
        """Trigger a run; False if a run with this id exists already (409), which is what we want."""
        resp = self.post(f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "conf": conf,
                                                      "logical_date": f"{logical_date}T00:00:00Z" if logical_date else None})
        if resp.status_code == 409:
            return False
        resp.raise_for_status()
        return True

    def paged(self, path: str, key: str, **params) -> list[dict]:
        """Every item of a list endpoint, page by page (``key``: the list's name in the response)."""
        items: list[dict] = []
        while True:
            page = self.get(path, limit=PAGE, offset=len(items), **params)
            items += page[key]
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def runs(self, dag_id: str, **filters) -> list[dict]:
        """The DAG's runs; ``filters`` are the endpoint's query parameters, e.g. ``start_date_gte``."""
        return self.paged(f"/dags/{dag_id}/dagRuns", "dag_runs", order_by="logical_date", **filters)

    def task_instances(self, dag_id: str = "~", **filters) -> list[dict]:
        """The task instances of every run of ``dag_id`` (``~``: of every DAG)."""
        return self.paged(f"/dags/{dag_id}/dagRuns/~/taskInstances", "task_instances", **filters)

    def asset_events(self, source_dag_id: str, attempts: int = 5, **filters) -> list[dict]:
        """The asset events that tasks of ``source_dag_id`` published, each with the runs it created
        (``created_dagruns``). Airflow 3.3.2 answers 500 while one of those runs is queued, its start date still
        null (apache/airflow#71360, fixed upstream by #71379); retried, since a queued run starts within seconds."""
        for attempt in range(1, attempts + 1):
            try:
                return self.paged("/assets/events", "asset_events", source_dag_id=source_dag_id, **filters)
            except requests.HTTPError as exc:
                if exc.response is None or exc.response.status_code != 500 or attempt == attempts:
                    raise
                time.sleep(2 * attempt)

    def active_runs(self, dag_id: str) -> int:
        return self.get(f"/dags/{dag_id}/dagRuns", state=["queued", "running"], limit=1)["total_entries"]

    def queued_asset_events(self, dag_id: str) -> int:
        return self.get(f"/dags/{dag_id}/assets/queuedEvents")["total_entries"]

    def busy(self, dag_ids: list[str]) -> bool:
        """Whether a run of these DAGs is queued or running, or an asset event waits to trigger one."""
        return any(self.active_runs(d) for d in dag_ids) or any(self.queued_asset_events(d) for d in dag_ids)

    def wait_until_idle(self, dag_ids: list[str], settle: float = 5, timeout: float = 1800) -> None:
        """Wait until, for ``settle`` seconds in a row, no run of these DAGs is queued or running and no
        asset event waits to trigger one."""
        deadline, quiet_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.busy(dag_ids):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            time.sleep(3)
        raise TimeoutError(f"runs of {dag_ids} still active after {timeout}s")
