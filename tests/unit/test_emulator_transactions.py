"""The warehouse emulator ends a transaction whose client went away, as Snowflake does: a statement that
changes data waits while another session's open transaction has changed data; that transaction is rolled
back once idle for long enough, and a statement waits at most so long (devstack/warehouse.py)."""

from __future__ import annotations

import asyncio
import gzip
import json

from mlplatform.devstack.warehouse import DetachedTransactions


class Session:
    def __init__(self):
        self.rolled_back = False

    def rollback(self):
        self.rolled_back = True


def request(token: str, sql: str):
    from starlette.requests import Request

    body = gzip.compress(json.dumps({"sqlText": sql}).encode())
    scope = {"type": "http", "method": "POST", "path": "/queries/v1/query-request", "query_string": b"",
             "headers": [(b"authorization", f'Snowflake Token="{token}"'.encode()), (b"content-encoding", b"gzip")]}

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def run(transactions: DetachedTransactions, token: str, sql: str):
    return asyncio.run(transactions.query(request(token, sql)))


def emulator(idle_after: float, max_wait: float):
    ran = []

    async def endpoint(req):
        ran.append(json.loads(gzip.decompress(await req.body()))["sqlText"])
        return "ok"

    sessions = {"dead": Session(), "live": Session()}
    return DetachedTransactions(endpoint, sessions, idle_after, max_wait=max_wait, poll=0.01), sessions, ran


def test_a_dead_clients_transaction_is_rolled_back_once_idle_and_the_waiting_statement_runs():
    transactions, sessions, ran = emulator(idle_after=0.2, max_wait=5)
    dead = sessions["dead"]
    for sql in ("BEGIN", "DELETE FROM T WHERE DS = 'a'", "INSERT INTO T VALUES ('a', 1)"):
        run(transactions, "dead", sql)
    run(transactions, "live", "BEGIN")
    assert run(transactions, "live", "SELECT COUNT(*) FROM T") == "ok", "reads never wait"

    assert run(transactions, "live", "DELETE FROM T WHERE DS = 'a'") == "ok"

    assert dead.rolled_back and "dead" not in sessions, "its session ended with it"
    assert ran[-1] == "DELETE FROM T WHERE DS = 'a'" and not sessions["live"].rolled_back


def test_a_statement_gives_up_on_a_transaction_still_in_use_with_a_lock_timeout():
    transactions, sessions, ran = emulator(idle_after=60, max_wait=0.2)
    run(transactions, "dead", "BEGIN")
    run(transactions, "dead", "UPDATE T SET K = 2")

    refused = run(transactions, "live", "INSERT INTO T VALUES ('b', 2)")

    assert json.loads(refused.body)["code"] == "000625" and json.loads(refused.body)["success"] is False
    assert ran == ["BEGIN", "UPDATE T SET K = 2"] and not sessions["dead"].rolled_back
    run(transactions, "dead", "COMMIT")
    assert run(transactions, "live", "INSERT INTO T VALUES ('b', 2)") == "ok", "free once the other commits"
