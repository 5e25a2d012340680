"""The COPY INTO a bulk load sends: every column once, key values bound, parquet fields cast, and only plain
names ever written into the statement (the emulator runs the statements: tests/integration/test_publish.py)."""

import pytest

from mlplatform.warehouse import StagedFiles, _copy_from_stage, lake_stage_files

COLUMNS = {"MODEL_NAME": "VARCHAR", "DS": "DATE", "SCORE": "DOUBLE"}
KEY = {"MODEL_NAME": "m", "DS": "2013-06-01"}


def test_key_columns_are_bound_and_the_others_are_cast_fields():
    staged = lake_stage_files("FLIGHTS.ML.LAKE", "predictions/m/ds=2013-06-01", ["part-a.parquet", "part-b.parquet"])
    sql = _copy_from_stage("FLIGHTS.ML.P", COLUMNS, KEY, {"SCORE": "score"}, staged)
    assert sql == ("COPY INTO FLIGHTS.ML.P (MODEL_NAME, DS, SCORE) "
                   "FROM (SELECT %(MODEL_NAME)s::VARCHAR, %(DS)s::DATE, $1:score::DOUBLE "
                   "FROM @FLIGHTS.ML.LAKE/predictions/m/ds=2013-06-01/) "
                   "FILES = (%(file_0)s, %(file_1)s) FILE_FORMAT = (TYPE = PARQUET) FORCE = TRUE")


def test_uploaded_files_are_loaded_by_location_and_purged():
    staged = StagedFiles(location="@FLIGHTS.ML.LOAD/abc/", files=(), purge=True)
    sql = _copy_from_stage("FLIGHTS.ML.P", COLUMNS, KEY, {"SCORE": "score"}, staged)
    assert "FILES" not in sql and sql.endswith("FORCE = TRUE PURGE = TRUE")


@pytest.mark.parametrize("fields, key, problem", [
    ({}, KEY, "missing or twice: ['SCORE']"),
    ({"SCORE": "score", "DS": "ds"}, KEY, "missing or twice: ['DS']"),
    ({"SCORE": "score", "EXTRA": "x"}, KEY, "unknown: ['EXTRA']"),
])
def test_a_load_names_each_column_exactly_once(fields, key, problem):
    staged = StagedFiles(location="@S/x/", files=(), purge=True)
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        _copy_from_stage("FLIGHTS.ML.P", COLUMNS, key, fields, staged)


@pytest.mark.parametrize("stage, path, field", [
    ("FLIGHTS.ML.LAKE", "predictions/m/ds=2013-06-01') PURGE = TRUE --", "score"),
    ("FLIGHTS.ML.LAKE; DROP TABLE X", "predictions/m/ds=2013-06-01", "score"),
    ("FLIGHTS.ML.LAKE", "predictions/m/ds=2013-06-01", "score::VARCHAR, 'x'"),
])
def test_only_plain_names_reach_the_statement(stage, path, field):
    with pytest.raises(ValueError, match="plain"):
        staged = lake_stage_files(stage, path, ["part-a.parquet"])
        _copy_from_stage("FLIGHTS.ML.P", COLUMNS, KEY, {"SCORE": field}, staged)
