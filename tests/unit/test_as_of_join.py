import pandas as pd

from mlplatform.config import model_config
from mlplatform.ingest import join_as_of

CTX = model_config("flight_delay").context


def test_each_origin_gets_its_latest_observation_before_the_cutoff():
    rows = pd.DataFrame({"FLIGHT_ID": [1, 2, 3], "ORIGIN": ["EWR", "JFK", "LGA"]})
    observed = pd.DataFrame({
        "ORIGIN": ["EWR", "EWR", "JFK"],
        "OBSERVED_AT": pd.to_datetime(["2013-01-04 22:00", "2013-01-04 23:00", "2013-01-04 21:00"]),
        "OBSERVED_AT_UTC": pd.to_datetime(["2013-01-05 03:00", "2013-01-05 04:00", "2013-01-05 02:00"]),
        "TEMP": [30.0, 31.0, 35.0], "WIND_SPEED": [5.0, 6.0, 7.0], "PRECIP": [0.0, 0.0, 0.1], "VISIB": [10.0, 9.0, 8.0],
    })
    joined = join_as_of(rows, observed, CTX).set_index("FLIGHT_ID")
    assert joined.loc[1, "ORIGIN_WX_TEMP"] == 31.0
    assert joined.loc[2, "ORIGIN_WX_OBSERVED_AT"] == pd.Timestamp("2013-01-04 21:00")
    assert pd.isna(joined.loc[3, "ORIGIN_WX_TEMP"]), "no observation in the window: missing, never a later one"
    assert "ORIGIN_WX_OBSERVED_AT_UTC" not in joined.columns


def test_no_observation_in_the_window_leaves_weather_missing():
    rows = pd.DataFrame({"FLIGHT_ID": [1, 2], "ORIGIN": ["EWR", "JFK"]})
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in CTX.columns})
    joined = join_as_of(rows, empty, CTX)
    assert len(joined) == 2 and joined["ORIGIN_WX_TEMP"].isna().all()
