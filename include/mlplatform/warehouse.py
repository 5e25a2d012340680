"""The only code that talks SQL to the warehouse.

Values always travel as bind parameters; identifiers come from validated model config.
Production uses the Snowflake provider's stock ``SnowflakeHook``. The local emulator
(fakesnow) speaks plain HTTP, which the stock hook cannot express, so a connection whose
extra declares ``"protocol": "http"`` gets ``EmulatorSnowflakeHook``: the stock hook
plus that one connector argument. Nothing else differs between the two paths.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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

    def put_files(self, stage: str, paths: list[str]) -> "StagedFiles":
        """Upload local files to a fresh directory of the temporary stage ``stage`` (created if needed, before
        any transaction: CREATE is DDL, which would commit one). Snowflake drops a temporary stage, files
        and all, when the session ends; a load also purges the files it loaded."""
        stage = checked_identifier(stage)
        location = f"@{stage}/{uuid.uuid4().hex}/"
        cursor = self.connection().cursor()
        cursor.execute(f"CREATE TEMPORARY STAGE IF NOT EXISTS {stage}")
        for path in paths:
            if "'" in path:
                raise ValueError(f"cannot PUT {path!r}: a quote in a local path cannot be written in the command")
            # Parquet compresses its own pages: gzipping the file again would cost time for nothing.
            cursor.execute(f"PUT 'file://{path}' {location} AUTO_COMPRESS = FALSE")
        return StagedFiles(location=location, files=(), purge=True)

    def replace_from_stage(self, table: str, columns: dict[str, str], key: dict[str, str], fields: dict[str, str],
                           staged: "StagedFiles", expected_rows: int) -> int:
        """Replace the rows of ``table`` matching ``key`` with the rows of staged parquet files, in one
        transaction: DELETE, then COPY INTO, then COMMIT only if the load brought exactly ``expected_rows``
        rows. Readers see the old rows or the new, never a mix; a failure anywhere rolls back.

        ``columns`` are the table's columns and their types. ``fields`` maps each column not in ``key`` to the
        parquet field it is loaded from; the key columns are loaded from ``key`` itself, so the rows loaded are
        exactly the rows the next replace deletes."""
        copy_sql = _copy_from_stage(table, columns, key, fields, staged)
        condition = " AND ".join(f"{checked_identifier(k)} = %({k})s" for k in key)
        cursor = self.connection().cursor()
        cursor.execute("BEGIN")
        try:
            cursor.execute(f"DELETE FROM {checked_identifier(table)} WHERE {condition}", key)
            cursor.execute(copy_sql, {**key, **{f"file_{i}": f for i, f in enumerate(staged.files)}})
            loaded = _rows_loaded(cursor)
            if loaded != expected_rows:
                raise RuntimeError(f"loading {table} for {key} brought {loaded} rows, expected {expected_rows}; "
                                   "rolled back")
            pause_point("warehouse.before_commit")
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # the error that got here matters; closing the session rolls back too
                cursor.execute("ROLLBACK")
            raise
        log.info("replaced %s rows of %s for %s from %s (query %s)", loaded, table, key, staged.location, cursor.sfqid)
        return loaded


@dataclass(frozen=True)
class StagedFiles:
    """Parquet files a COPY INTO can read: ``location`` is ``@stage/path/``; ``files``, when given, are the
    only names loaded from it (the rest of the location is ignored); ``purge`` removes them once loaded."""
    location: str
    files: tuple[str, ...]
    purge: bool


# A stage path: a lake partition directory or a fresh upload directory, never anything a quote could end.
_STAGE_PATH = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")


def lake_stage_files(stage: str, partition_dir: str, files: list[str]) -> StagedFiles:
    """Files of a lake partition as the external stage ``stage`` (whose URL is the lake root) sees them: the
    warehouse reads them where they lie, and exactly the files named (a partition directory also holds the
    data files of its earlier versions)."""
    if not _STAGE_PATH.fullmatch(partition_dir):
        raise ValueError(f"not a plain stage path: {partition_dir!r}")
    return StagedFiles(location=f"@{checked_identifier(stage)}/{partition_dir}/", files=tuple(files), purge=False)


def _copy_from_stage(table: str, columns: dict[str, str], key: dict[str, str], fields: dict[str, str],
                     staged: StagedFiles) -> str:
    """COPY INTO ``table`` of every column, each a key value bound by name or a parquet field, cast to the
    column's type."""
    unknown = sorted((set(key) | set(fields)) - set(columns))
    missing = [c for c in columns if (c in key) == (c in fields)]
    if unknown or missing:
        raise ValueError(f"a load of {table} must name each of its columns {list(columns)} once, as a key or a "
                         f"field (unknown: {unknown}, missing or twice: {missing})")
    values = [(f"%({c})s" if c in key else f"$1:{checked_identifier(fields[c])}") + f"::{_checked_type(t)}"
              for c, t in columns.items()]
    files = ", ".join(f"%(file_{i})s" for i in range(len(staged.files)))
    return (f"COPY INTO {checked_identifier(table)} ({', '.join(map(checked_identifier, columns))}) "
            f"FROM (SELECT {', '.join(values)} FROM {staged.location}) "
            + (f"FILES = ({files}) " if staged.files else "")
            + "FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE" + (" PURGE = TRUE" if staged.purge else ""))


def _checked_type(sql_type: str) -> str:
    if not re.fullmatch(r"[A-Z_]+(\([0-9, ]+\))?", sql_type):
        raise ValueError(f"not a plain SQL type: {sql_type!r}")
    return sql_type


def _rows_loaded(cursor) -> int:
    """The rows a COPY INTO loaded, summed over its result's rows (one per file; none when no file matched)."""
    names = [d[0].lower() for d in cursor.description]
    rows = cursor.fetchall()
    if "rows_loaded" not in names:
        return 0
    at = names.index("rows_loaded")
    return sum(int(row[at]) for row in rows)


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
# The table's columns and types, in order: its DDL and every load are built from them.
PREDICTIONS_COLUMNS = {
    "MODEL_NAME": "VARCHAR", "MODEL_VERSION": "VARCHAR", "MLFLOW_RUN_ID": "VARCHAR", "DS": "DATE",
    "ENTITY_KEY": "VARCHAR", "SCORE": "DOUBLE", "PREDICTED_LABEL": "INTEGER", "INPUT_PARTITION_HASH": "VARCHAR",
}
# Where a load PUTs the files when the warehouse has no stage on the lake (settings().warehouse_lake_stage).
PREDICTIONS_LOAD_STAGE = "FLIGHTS.ML.PREDICTIONS_LOAD"


def ensure_predictions_table(wh: Warehouse) -> None:
    wh.execute("CREATE SCHEMA IF NOT EXISTS FLIGHTS.ML")
    columns = ", ".join(f"{name} {sql_type}" for name, sql_type in PREDICTIONS_COLUMNS.items())
    wh.execute(f"CREATE TABLE IF NOT EXISTS {PREDICTIONS_TABLE} ({columns})")
