import pytest

from mlplatform.contracts import Contract, ContractViolation, check
from tests.unit.helpers import schedule_rows

CONTRACT = Contract("datasets/flight_delay", ("FLIGHT_ID", "CARRIER", "DISTANCE"), "FLIGHT_ID")


def test_good_batch_passes_and_extra_columns_warn():
    warnings = check(schedule_rows(), CONTRACT)
    assert warnings and "extra columns" in warnings[0]


def test_missing_column_names_column_and_rule():
    with pytest.raises(ContractViolation) as err:
        check(schedule_rows().drop(columns=["CARRIER"]), CONTRACT)
    assert err.value.column == "CARRIER" and err.value.rule == "required_column"


def test_zero_rows_and_duplicate_keys_fail():
    with pytest.raises(ContractViolation, match="min_rows"):
        check(schedule_rows().iloc[:0], CONTRACT)
    rows = schedule_rows()
    rows.loc[1, "FLIGHT_ID"] = rows.loc[0, "FLIGHT_ID"]
    with pytest.raises(ContractViolation, match="unique_key"):
        check(rows, CONTRACT)
