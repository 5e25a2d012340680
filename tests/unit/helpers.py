"""Tiny frames shaped like the flight_delay sources."""

from __future__ import annotations

import numpy as np
import pandas as pd


def schedule_rows(n: int = 40, day: str = "2013-01-05", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dep = rng.integers(5, 23, n) * 100 + rng.choice([0, 15, 30, 45], n)
    base = pd.Timestamp(day)
    return pd.DataFrame({
        "FLIGHT_ID": np.arange(1, n + 1) + int(base.strftime("%j")) * 1000,
        "FLIGHT_DATE": [base.date()] * n,
        "SCHED_DEPARTURE": [base + pd.Timedelta(hours=int(d // 100), minutes=int(d % 100)) for d in dep],
        "SCHED_DEP_TIME": dep,
        "SCHED_ARR_TIME": (dep + 230) % 2400,
        "CARRIER": rng.choice(["UA", "AA", "B6"], n),
        "FLIGHT": rng.integers(1, 3000, n),
        "TAILNUM": rng.choice(["N1", "N2", None], n),
        "ORIGIN": rng.choice(["EWR", "JFK", "LGA"], n),
        "DEST": rng.choice(["ORD", "ATL", "LAX"], n),
        "DISTANCE": rng.integers(200, 2500, n).astype(float),
        # Weather at the origin as of the cut-off, as ingest joins it.
        "ORIGIN_WX_OBSERVED_AT": [base - pd.Timedelta(hours=1)] * n,
        "ORIGIN_WX_TEMP": rng.normal(40, 10, n).round(1),
        "ORIGIN_WX_WIND_SPEED": rng.uniform(0, 25, n).round(1),
        "ORIGIN_WX_PRECIP": rng.choice([0.0, 0.0, 0.1], n),
        "ORIGIN_WX_VISIB": rng.choice([10.0, 5.0], n),
    })
