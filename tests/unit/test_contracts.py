"""One test per kind of bad input: each gives a clear error naming the column and the rule."""

from dataclasses import replace
from datetime import datetime

import pandas as pd
import pytest

from mlplatform.config import model_config
from mlplatform.contracts import Contract, ContractViolation, check, check_table_columns
from tests.unit.helpers import schedule_rows

CONTRACT = model_config("flight_delay").source.contract


def warehouse_batch(n: int = 200):
    """Schedule rows as the warehouse returns them, before the weather join."""
    return schedule_rows(n).filter(regex="^(?!ORIGIN_WX_)")
DAY = (datetime(2013, 1, 5), datetime(2013, 1, 6))


def breach(frame) -> ContractViolation:
    with pytest.raises(ContractViolation) as err:
        check(frame, CONTRACT, DAY)
    assert err.value.column in str(err.value) and err.value.rule in str(err.value)
    return err.value


def test_good_batch_passes_without_warnings():
    assert check(warehouse_batch(200), CONTRACT, DAY).warnings == []


def test_missing_column():
    err = breach(warehouse_batch(200).drop(columns=["DISTANCE"]))
    assert (err.column, err.rule) == ("DISTANCE", "required_column")


def test_renamed_column_is_named_with_a_hint():
    err = breach(warehouse_batch(200).rename(columns={"DISTANCE": "DIST_MILES"}))
    assert err.column == "DISTANCE" and "DIST_MILES" in err.detail and "renamed" in err.detail


def test_extra_column_is_accepted_with_a_warning():
    rows = warehouse_batch(200).assign(GATE="A1")
    assert any("GATE" in w for w in check(rows, CONTRACT, DAY).warnings)


def test_text_in_numeric_column():
    rows = warehouse_batch(200).astype({"DISTANCE": object})
    rows.loc[3, "DISTANCE"] = "far"
    err = breach(rows)
    assert (err.column, err.rule) == ("DISTANCE", "dtype") and "far" in err.detail


def test_all_null_column():
    err = breach(warehouse_batch(200).assign(TAILNUM=None))
    assert (err.column, err.rule) == ("TAILNUM", "not_all_null")


def test_null_in_required_column():
    rows = warehouse_batch(200)
    rows.loc[0, "ORIGIN"] = None
    assert breach(rows).rule == "not_null"


def test_day_with_zero_rows():
    err = breach(warehouse_batch(200).iloc[:0])
    assert err.rule == "row_count" and "0 rows" in err.detail


def test_duplicate_keys():
    rows = warehouse_batch(200)
    rows.loc[1, "FLIGHT_ID"] = rows.loc[0, "FLIGHT_ID"]
    assert (breach(rows).rule, breach(rows).column) == ("unique_key", "FLIGHT_ID")


def test_negative_distance_is_out_of_range():
    rows = warehouse_batch(200)
    rows.loc[7, "DISTANCE"] = -50.0
    err = breach(rows)
    assert (err.column, err.rule) == ("DISTANCE", "min") and "-50" in err.detail


def test_unseen_category_is_accepted_and_counted():
    rows = warehouse_batch(200)
    rows.loc[:4, "CARRIER"] = "ZZ"
    report = check(rows, CONTRACT, DAY)
    assert report.unseen_categories == {"CARRIER": {"ZZ": 5}}


def test_timestamps_outside_the_interval():
    rows = warehouse_batch(200)
    rows.loc[2, "SCHED_DEPARTURE"] = pd.Timestamp("2013-01-07 09:00")
    err = breach(rows)
    assert (err.column, err.rule) == ("SCHED_DEPARTURE", "inside_interval") and "2013-01-07" in err.detail


def test_timestamps_outside_the_interval_say_how_many_rows_claim_the_day_and_where_they_lie():
    rows = warehouse_batch(200)
    rows.loc[:49, "SCHED_DEPARTURE"] += pd.Timedelta(days=365)
    err = breach(rows)
    assert (err.column, err.rule) == ("SCHED_DEPARTURE", "inside_interval")
    assert "50 of 200 rows with FLIGHT_DATE = 2013-01-05" in err.detail
    latest = rows.loc[:49, "SCHED_DEPARTURE"].max()
    assert f"runs from {rows.loc[:49, 'SCHED_DEPARTURE'].min()} to {latest}" in err.detail


def test_the_flight_schedule_is_partitioned_by_its_flight_date():
    assert CONTRACT.partition_column == "FLIGHT_DATE"


@pytest.mark.parametrize("column", ["NO_SUCH_COLUMN", "SCHED_DEPARTURE", "DISTANCE"])
def test_a_partition_column_must_be_a_declared_date_column(column):
    with pytest.raises(ValueError, match=f"partition_column '{column}' must be a declared column of dtype date"):
        replace(CONTRACT, partition_column=column)


def test_partition_column_comes_from_the_contract_mapping():
    raw = {"partition_column": "DAY", "columns": {"ID": {"dtype": "int"}, "DAY": {"dtype": "date"}}}
    assert Contract.from_config("x.features", "ID", None, raw).partition_column == "DAY"
    assert Contract.from_config("x.features", "ID", None, {"columns": raw["columns"]}).partition_column is None


def test_table_with_every_contract_column_passes_the_schema_check():
    columns = [c.lower() for c in CONTRACT.columns] + ["GATE"]  # case-insensitive; extra columns are fine
    check_table_columns(CONTRACT, "FLIGHTS.RAW.FLIGHT_SCHEDULE", columns)


def test_renamed_table_column_names_the_missing_and_the_unexpected_columns():
    columns = [("DISTANCE_MILES" if c == "DISTANCE" else c) for c in CONTRACT.columns]
    with pytest.raises(ContractViolation) as err:
        check_table_columns(CONTRACT, "FLIGHTS.RAW.FLIGHT_SCHEDULE", columns)
    assert (err.value.column, err.value.rule) == ("DISTANCE", "required_column")
    assert "['DISTANCE_MILES'] (renamed?)" in err.value.detail and "FLIGHTS.RAW.FLIGHT_SCHEDULE" in err.value.detail


def test_dropped_table_columns_are_all_named():
    columns = [c for c in CONTRACT.columns if c not in ("DISTANCE", "TAILNUM")]
    with pytest.raises(ContractViolation) as err:
        check_table_columns(CONTRACT, "FLIGHTS.RAW.FLIGHT_SCHEDULE", columns)
    assert err.value.column == "TAILNUM,DISTANCE" and "no unexpected columns (dropped?)" in err.value.detail


def test_the_schema_check_covers_the_columns_the_query_filters_on():
    contract = replace(CONTRACT, columns={k: v for k, v in CONTRACT.columns.items() if k != "SCHED_DEPARTURE"})
    assert "SCHED_DEPARTURE" in contract.queried_columns
    with pytest.raises(ContractViolation, match="SCHED_DEPARTURE"):
        check_table_columns(contract, "T", list(contract.columns))
