"""The only code that talks SQL to the warehouse.

Values always travel as bind parameters; identifiers come from validated model config.
Production uses the Snowflake provider's stock ``SnowflakeHook``. The local emulator
(fakesnow) speaks plain HTTP, which the stock hook cannot express, so a connection whose
extra declares ``"protocol": "http"`` gets ``EmulatorSnowflakeHook``: the stock hook
plus that one connector argument. Nothing else differs between the two paths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from mlplatform.config import checked_identifier

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class WarehouseTableMissing(RuntimeError):
    """The source table named in a model config does not exist in the warehouse."""


@dataclass(frozen=True)
class QueryResult:
    frame: "pd.DataFrame"
    sql: str
    params: dict
    query_id: str


def _emulator_hook_class():
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    class EmulatorSnowflakeHook(SnowflakeHook):
        def _get_conn_params(self) -> dict[str, Any]:
            params = super()._get_conn_params()
            extra = self.get_connection(self.get_conn_id()).extra_dejson
            params["protocol"] = extra["protocol"]
            return params

    return EmulatorSnowflakeHook


def warehouse_hook(conn_id: str):
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    extra = SnowflakeHook.get_connection(conn_id).extra_dejson
    if extra.get("protocol") == "http":
        return _emulator_hook_class()(snowflake_conn_id=conn_id)
    return SnowflakeHook(snowflake_conn_id=conn_id)


class Warehouse:
    def __init__(self, conn_id: str):
        self.conn_id = conn_id
        self._conn = None

    def connection(self):
        if self._conn is None:
            self._conn = warehouse_hook(self.conn_id).get_conn()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def query(self, sql: str, params: dict | None = None) -> QueryResult:
        import snowflake.connector.errors as sf_errors

        cursor = self.connection().cursor()
        try:
            cursor.execute(sql, params or {})
        except sf_errors.ProgrammingError as exc:
            if "does not exist" in str(exc):
                raise WarehouseTableMissing(f"warehouse query failed, a table is missing: {exc.msg}") from exc
            raise
        frame = cursor.fetch_pandas_all()
        log.info("warehouse query %s returned %d rows", cursor.sfqid, len(frame))
        return QueryResult(frame=frame, sql=sql, params=dict(params or {}), query_id=cursor.sfqid)

    def execute(self, sql: str, params: dict | None = None) -> str:
        cursor = self.connection().cursor()
        cursor.execute(sql, params or {})
        return cursor.sfqid

    def replace_rows(self, table: str, where: dict, columns: list[str], row_batches: Iterable[list[tuple]]) -> int:
        """Delete the rows matching ``where`` then insert the batches of rows, in one transaction, so a
        re-run for the same key leaves exactly one copy. Batches keep memory bounded for large keys."""
        table = checked_identifier(table)
        cols = [checked_identifier(c) for c in columns]
        condition = " AND ".join(f"{checked_identifier(k)} = %({k})s" for k in where)
        placeholders = ", ".join(["%s"] * len(cols))
        cursor = self.connection().cursor()
        cursor.execute("BEGIN")
        try:
            cursor.execute(f"DELETE FROM {table} WHERE {condition}", where)
            inserted = 0
            for rows in row_batches:
                if rows:
                    cursor.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders})", rows)
                    inserted += len(rows)
            cursor.execute("COMMIT")
        except Exception:
            cursor.execute("ROLLBACK")
            raise
        return inserted


def select_between(table: str, columns: tuple[str, ...], time_column: str, start, end) -> tuple[str, dict]:
    """SQL and binds for the rows of ``table`` whose ``time_column`` lies in [start, end)."""
    cols = ", ".join(checked_identifier(c) for c in columns)
    tc = checked_identifier(time_column)
    sql = f"SELECT {cols} FROM {checked_identifier(table)} WHERE {tc} >= %(start)s AND {tc} < %(end)s ORDER BY 1"
    return sql, {"start": start.strftime("%Y-%m-%d %H:%M:%S"), "end": end.strftime("%Y-%m-%d %H:%M:%S")}


PREDICTIONS_TABLE = "FLIGHTS.ML.PREDICTIONS"
PREDICTIONS_COLUMNS = [
    "MODEL_NAME", "MODEL_VERSION", "MLFLOW_RUN_ID", "DS", "ENTITY_KEY",
    "SCORE", "PREDICTED_LABEL", "INPUT_PARTITION_HASH",
]


def ensure_predictions_table(wh: Warehouse) -> None:
    wh.execute("CREATE SCHEMA IF NOT EXISTS FLIGHTS.ML")
    wh.execute(
        f"CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} (MODEL_NAME VARCHAR, MODEL_VERSION VARCHAR, "
        "MLFLOW_RUN_ID VARCHAR, DS DATE, ENTITY_KEY VARCHAR, SCORE DOUBLE, PREDICTED_LABEL INTEGER, "
        "INPUT_PARTITION_HASH VARCHAR)"
    )
