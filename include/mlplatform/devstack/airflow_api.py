"""A small client for Airflow 3's REST API (/api/v2), used by the demo and the tests."""

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

    def backfill(self, dag_id: str, from_date: str, to_date: str, max_active_runs: int = 3, attempts: int = 5) -> dict:
        """Create a backfill. On SQLite the endpoint answers 503 when the database is locked; retry then."""
        body = {"dag_id": dag_id, "from_date": f"{from_date}T00:00:00Z", "to_date": f"{to_date}T00:00:00Z",
                "max_active_runs": max_active_runs, "reprocess_behavior": "failed"}
        for attempt in range(1, attempts + 1):
            resp = self.post("/backfills", body)
            if resp.status_code != 503 or attempt == attempts:
                resp.raise_for_status()
                return resp.json()
            time.sleep(2 * attempt)

    def trigger(self, dag_id: str, run_id: str, logical_date: str | None, conf: dict) -> None:
        resp = self.post(f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "conf": conf,
                                                      "logical_date": f"{logical_date}T00:00:00Z" if logical_date else None})
        if resp.status_code != 409:  # 409: this run already exists, which is what we want
            resp.raise_for_status()

    def paged(self, path: str, key: str, **params) -> list[dict]:
        """Every item of a list endpoint, page by page (``key``: the list's name in the response)."""
        items: list[dict] = []
        while True:
            page = self.get(path, limit=PAGE, offset=len(items), **params)
            items += page[key]
            if not page[key] or len(items) >= page["total_entries"]:
                return items

    def runs(self, dag_id: str) -> list[dict]:
        return self.paged(f"/dags/{dag_id}/dagRuns", "dag_runs", order_by="logical_date")

    def task_instances(self, dag_id: str = "~") -> list[dict]:
        """The task instances of every run of ``dag_id`` (``~``: of every DAG)."""
        return self.paged(f"/dags/{dag_id}/dagRuns/~/taskInstances", "task_instances")

    def queued_asset_events(self, dag_id: str) -> int:
        return self.get(f"/dags/{dag_id}/assets/queuedEvents")["total_entries"]

    def wait_until_idle(self, dag_ids: list[str], settle: float = 5, timeout: float = 1800) -> None:
        """Wait until, for ``settle`` seconds in a row, no run of these DAGs is queued or running and no
        asset event waits to trigger one."""
        deadline, quiet_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            busy = any(r["state"] not in FINISHED for d in dag_ids for r in self.runs(d)) or any(
                self.queued_asset_events(d) for d in dag_ids)
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            time.sleep(3)
        raise TimeoutError(f"runs of {dag_ids} still active after {timeout}s")
