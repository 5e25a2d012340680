"""The only code that talks SQL to the warehouse.

Values always travel as bind parameters; identifiers come from validated model config.
Production uses the Snowflake provider's stock ``SnowflakeHook``. The local emulator
(fakesnow) speaks plain HTTP, which the stock hook cannot express, so a connection whose
extra declares ``"protocol": "http"`` gets ``EmulatorSnowflakeHook``: the stock hook
plus that one connector argument. Nothing else differs between the two paths.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from mlplatform.config import checked_identifier
from mlplatform.faults import pause_point

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class WarehouseTableMissing(RuntimeError):
    """The source table named in a model config does not exist in the warehouse."""


class WarehouseColumnMissing(RuntimeError):
    """The warehouse refused a query naming a column the table does not have (renamed or dropped)."""

    def __init__(self, column: str, message: str):
        self.column = column
        super().__init__(message)


# The driver's error for an unknown column: Snowflake's (error 904), and the emulator's (DuckDB's binder).
_UNKNOWN_COLUMN = (re.compile(r"invalid identifier '(?:[A-Za-z0-9_$]+\.)*\"?([^'\"]+)\"?'"),
                   re.compile(r'Referenced column "([^"]+)" not found'))


def unknown_column(message: str) -> str | None:
    """The column a driver error says is unknown, or None when the error is about something else."""
    for pattern in _UNKNOWN_COLUMN:
        if match := pattern.search(message):
            return match.group(1)
    return None


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
            if column := unknown_column(str(exc)):
                raise WarehouseColumnMissing(column, f"warehouse query failed, column {column} is missing: "
                                                     f"{exc.msg}") from exc
            raise
        frame = cursor.fetch_pandas_all()
        log.info("warehouse query %s returned %d rows", cursor.sfqid, len(frame))
        return QueryResult(frame=frame, sql=sql, params=dict(params or {}), query_id=cursor.sfqid)

    def table_columns(self, table: str) -> list[str]:
        """The table's column names in order, as the warehouse stores them (unquoted identifiers in upper
        case), from INFORMATION_SCHEMA. A one- or two-part name resolves in the session's current database
        and schema, as queries do. Raises WarehouseTableMissing when the table is not there."""
        *qualifiers, name = checked_identifier(table).upper().split(".")
        database, schema = ([None, None] + qualifiers)[-2:]
        catalog = f"{database}.INFORMATION_SCHEMA" if database else "INFORMATION_SCHEMA"
        cursor = self.connection().cursor()
        cursor.execute(f"SELECT COLUMN_NAME FROM {catalog}.COLUMNS WHERE TABLE_NAME = %(table)s "
                       "AND TABLE_SCHEMA = COALESCE(%(schema)s, CURRENT_SCHEMA()) ORDER BY ORDINAL_POSITION",
                       {"table": name, "schema": schema})
        columns = [row[0] for row in cursor.fetchall()]
        if not columns:
            raise WarehouseTableMissing(f"table {table} does not exist in the warehouse (or is not visible)")
        return columns

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
            pause_point("warehouse.before_commit")
            cursor.execute("COMMIT")
        except Exception:
            cursor.execute("ROLLBACK")
            raise
        return inserted


def _timestamp(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def select_between(table: str, columns: tuple[str, ...], time_column: str, start, end) -> tuple[str, dict]:
    """SQL and binds for the rows of ``table`` whose ``time_column`` lies in [start, end)."""
    cols = ", ".join(checked_identifier(c) for c in columns)
    tc = checked_identifier(time_column)
    sql = f"SELECT {cols} FROM {checked_identifier(table)} WHERE {tc} >= %(start)s AND {tc} < %(end)s ORDER BY 1"
    return sql, {"start": _timestamp(start), "end": _timestamp(end)}


def select_day(table: str, columns: tuple[str, ...], partition_column: str, day: str) -> tuple[str, dict]:
    """SQL and binds for the rows of ``table`` whose ``partition_column`` (a date) is ``day``."""
    cols = ", ".join(checked_identifier(c) for c in columns)
    pc = checked_identifier(partition_column)
    return f"SELECT {cols} FROM {checked_identifier(table)} WHERE {pc} = %(day)s ORDER BY 1", {"day": day}


def summarise(table: str, column: str, where_column: str, *, equals=None, start=None, end=None) -> tuple[str, dict]:
    """SQL and binds for the count of rows of ``table`` whose ``where_column`` equals ``equals`` or lies in
    [start, end) (a bound left out is open), with the least and greatest ``column`` among them."""
    wc = checked_identifier(where_column)
    conditions, params = [], {}
    for op, key, value in (("=", "equals", equals), (">=", "start", start), ("<", "end", end)):
        if value is not None:
            conditions.append(f"{wc} {op} %({key})s")
            params[key] = value if isinstance(value, str) else _timestamp(value)
    c = checked_identifier(column)
    sql = (f"SELECT COUNT(*) AS N, MIN({c}) AS FIRST, MAX({c}) AS LAST FROM {checked_identifier(table)} "
           f"WHERE {' AND '.join(conditions)}")
    return sql, params


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
