"""Every row the warehouse holds for a day lands in the partition or in quarantine with a reason, and a
table whose columns drifted from the contract is a contract breach: against the warehouse emulator.

Each test changes the seeded warehouse on its own day (May 2013, used by no other test) and restores it."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from tests.integration.test_data_layer import ingest_run, outbox

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
TABLE = "FLIGHTS.RAW.FLIGHT_SCHEDULE"
SHIFTED_THIRD_DAY, RENAMED_DAY, RACE_DAY = "2013-05-20", "2013-05-21", "2013-05-22"
WHOLE_DAY = {"SCHED_DEPARTURE": "2013-05-23", "FLIGHT_DATE": "2013-05-24"}


@contextmanager
def changed(warehouse, change: str, undo: str, params: dict | None = None):
    warehouse.execute(change, params)
    try:
        yield
    finally:
        warehouse.execute(undo, params)


def shifted_a_year(warehouse, column: str, ds: str, rows: str = "TRUE"):
    """The rows of ``ds`` (by FLIGHT_DATE) matching ``rows`` get ``column`` a year later, until the block ends."""
    where = f"FLIGHT_DATE = %(ds)s AND {rows}"
    back = f"FLIGHT_DATE = DATEADD(year, 1, %(ds)s::DATE) AND {rows}" if column == "FLIGHT_DATE" else where
    return changed(warehouse, f"UPDATE {TABLE} SET {column} = DATEADD(year, 1, {column}) WHERE {where}",
                   f"UPDATE {TABLE} SET {column} = DATEADD(year, -1, {column}) WHERE {back}", {"ds": ds})


def flight_ids(warehouse, ds: str) -> set[int]:
    sql = f"SELECT FLIGHT_ID FROM {TABLE} WHERE FLIGHT_DATE = %(ds)s"
    return set(warehouse.query(sql, {"ds": ds}).frame["FLIGHT_ID"].astype(int))


def breach_of(ds: str):
    from mlplatform import ingest
    from mlplatform.contracts import ContractViolation

    with pytest.raises(ContractViolation) as err:
        ingest.ingest_features(MODEL, ds)
    return err.value


def quarantined(ds: str) -> dict:
    from mlplatform.lake import default_lake

    return default_lake().read_json(f"quarantine/{MODEL}.features/{ds}/reason.json")


def test_rows_claiming_the_day_with_event_times_a_year_off_are_quarantined_not_dropped(local_servers, warehouse):
    from mlplatform import ingest
    from mlplatform.lake import default_lake

    ds = SHIFTED_THIRD_DAY
    ingest.ingest_features(MODEL, ds)
    before = default_lake().partition("datasets", MODEL, ds)
    day_rows = flight_ids(warehouse, ds)
    with shifted_a_year(warehouse, "SCHED_DEPARTURE", ds, rows="MOD(FLIGHT_ID, 3) = 0"):
        err = breach_of(ds)
    shifted = sum(1 for i in day_rows if i % 3 == 0)
    assert (err.column, err.rule) == ("SCHED_DEPARTURE", "inside_interval")
    assert f"{shifted} of {len(day_rows)} rows with FLIGHT_DATE = {ds} lie outside" in err.detail

    reason = quarantined(ds)
    assert (reason["column"], reason["rule"]) == ("SCHED_DEPARTURE", "inside_interval")
    batch = default_lake().read_frame(f"quarantine/{MODEL}.features/{ds}/batch.parquet")
    assert set(batch["FLIGHT_ID"].astype(int)) == day_rows, "the quarantined batch holds every row of the day"
    after = default_lake().partition("datasets", MODEL, ds)
    assert (after.content_hash, after.manifest) == (before.content_hash, before.manifest), "the partition is unchanged"


def test_renamed_column_fails_fast_with_one_contract_breach_alert(local_servers, warehouse):
    from mlplatform.lake import default_lake

    ds = RENAMED_DAY
    alerts_before = len(outbox())
    with changed(warehouse, f"ALTER TABLE {TABLE} RENAME COLUMN DISTANCE TO DISTANCE_MILES",
                 f"ALTER TABLE {TABLE} RENAME COLUMN DISTANCE_MILES TO DISTANCE"):
        run, ti = ingest_run(ds)
    assert ti.state == "failed" and ti.try_number == 1, "a breach fails at once, without retries"
    assert {t.task_id: t.state for t in run.get_task_instances()}["ingest_labels"] == "success"

    new_alerts = outbox()[alerts_before:]
    assert [a["kind"] for a in new_alerts] == ["contract_breach"]
    assert "'DISTANCE'" in new_alerts[0]["text"] and "DISTANCE_MILES" in new_alerts[0]["text"]

    reason = quarantined(ds)
    assert (reason["column"], reason["rule"]) == ("DISTANCE", "required_column")
    assert "unexpected columns ['DISTANCE_MILES']" in reason["detail"] and "DISTANCE_MILES" in reason["table_columns"]
    assert default_lake().partition("datasets", MODEL, ds) is None


def test_column_missing_at_query_time_is_the_same_breach(local_servers, warehouse, monkeypatch):
    """Second line of defence: the column goes between the schema check and the query. The check is
    given the columns read just before the rename; the query meets the driver's own error."""
    from mlplatform.contracts import ContractViolation
    from mlplatform.warehouse import Warehouse, WarehouseColumnMissing

    columns_before = warehouse.table_columns(TABLE)
    with changed(warehouse, f"ALTER TABLE {TABLE} RENAME COLUMN DISTANCE TO DISTANCE_MILES",
                 f"ALTER TABLE {TABLE} RENAME COLUMN DISTANCE_MILES TO DISTANCE"):
        with pytest.raises(WarehouseColumnMissing) as driver_error:
            warehouse.query(f"SELECT FLIGHT_ID, DISTANCE FROM {TABLE} WHERE FLIGHT_DATE = %(ds)s", {"ds": RACE_DAY})
        monkeypatch.setattr(Warehouse, "table_columns", lambda self, table: columns_before)
        err = breach_of(RACE_DAY)
    assert driver_error.value.column == "DISTANCE"
    assert isinstance(err, ContractViolation) and (err.column, err.rule) == ("DISTANCE", "required_column")
    assert (quarantined(RACE_DAY)["column"], quarantined(RACE_DAY)["rule"]) == ("DISTANCE", "required_column")


def test_missing_table_is_still_a_missing_table(local_servers, warehouse):
    from mlplatform.warehouse import WarehouseTableMissing

    with pytest.raises(WarehouseTableMissing, match="FLIGHTS.RAW.NO_SUCH_TABLE"):
        warehouse.table_columns("FLIGHTS.RAW.NO_SUCH_TABLE")
    assert warehouse.table_columns("RAW.FLIGHT_SCHEDULE") == warehouse.table_columns(TABLE)
    assert warehouse.table_columns("flight_schedule") == warehouse.table_columns(TABLE), "current db and schema"


def test_whole_day_with_event_times_a_year_off_says_where_they_lie(local_servers, warehouse):
    ds = WHOLE_DAY["SCHED_DEPARTURE"]
    n = len(flight_ids(warehouse, ds))
    with shifted_a_year(warehouse, "SCHED_DEPARTURE", ds):
        err = breach_of(ds)
    assert (err.column, err.rule) == ("SCHED_DEPARTURE", "inside_interval")
    assert f"{n} of {n} rows with FLIGHT_DATE = {ds} lie outside" in err.detail
    assert "their SCHED_DEPARTURE runs from 2014-05-23 " in err.detail and " to 2014-05-23 " in err.detail


def test_whole_day_claiming_another_day_says_how_many_rows_each_column_holds(local_servers, warehouse):
    ds = WHOLE_DAY["FLIGHT_DATE"]
    n = len(flight_ids(warehouse, ds))
    with shifted_a_year(warehouse, "FLIGHT_DATE", ds):
        err = breach_of(ds)
    assert (err.column, err.rule) == ("*", "row_count")
    assert f"the table holds 0 rows with FLIGHT_DATE = {ds}, and {n} rows with SCHED_DEPARTURE in " \
           f"[{ds} 00:00:00, 2013-05-25 00:00:00) (FLIGHT_DATE 2014-05-24)" in err.detail
    assert "the table holds" in quarantined(ds)["detail"]


def test_census_without_a_partition_column_names_the_nearest_rows(local_servers, warehouse):
    from datetime import datetime

    from mlplatform import ingest
    from mlplatform.config import model_config

    weather = model_config(MODEL).context
    text = ingest.census(warehouse, weather.table, weather.contract, datetime(2014, 3, 1), datetime(2014, 3, 2))
    assert text.startswith("the table holds ") and "(the last at 2013-12-30 18:00:00)" in text
    assert text.endswith("and 0 rows with OBSERVED_AT from 2014-03-02 00:00:00 on")
