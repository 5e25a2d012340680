"""The driver's error for an unknown column, as Snowflake and the emulator word it, names that column."""

import pytest

from mlplatform.warehouse import unknown_column


@pytest.mark.parametrize("message, column", [
    # Snowflake, error 904: bare, qualified and quoted identifiers
    ("000904 (42000): 01b2-0000: SQL compilation error: error line 1 at position 7\ninvalid identifier 'DISTANCE'",
     "DISTANCE"),
    ("000904 (42000): SQL compilation error: error line 210 at position 45\ninvalid identifier 'S.START_TIME'",
     "START_TIME"),
    ("000904 (42000): SQL compilation error: error line 6 at position 7\ninvalid identifier '\"Company Symbol\"'",
     "Company Symbol"),
    # fakesnow (DuckDB's binder)
    ('002043 (02000): None: Binder Error: Referenced column "DISTANCE" not found in FROM clause!\n'
     'Candidate bindings: "DEST"', "DISTANCE"),
])
def test_unknown_column_is_read_from_the_driver_error(message, column):
    assert unknown_column(message) == column


@pytest.mark.parametrize("message", [
    "002003 (42S02): SQL compilation error:\nObject 'FLIGHTS.RAW.NOPE' does not exist or not authorized.",
    "001003 (42000): SQL compilation error:\nsyntax error line 1 at position 7 unexpected 'FROM'.",
])
def test_other_errors_name_no_column(message):
    assert unknown_column(message) is None
