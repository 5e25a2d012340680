"""Publishing a day of predictions to the warehouse: row-by-row executemany (the path publish_predictions took
before) versus the bulk path (stage + COPY INTO), against a real emulator server, side by side in one run.

    python bench/bench_publish.py [--old-rows 20000] [--bulk-rows 1000000] [--repeats 3]

A fakesnow server is started as the tests start it (mlplatform.devstack.warehouse, on a free port, in a
scratch directory), unseeded. The predictions partitions are written by the real score_partition, with a
stand-in model, so they hold the columns scoring writes. Each path replaces one day of FLIGHTS.ML.PREDICTIONS
in one transaction, from connecting to the commit:

- executemany: DELETE, then INSERT ... VALUES by executemany in batches of 100,000 rows (the old code);
- bulk_put: publish_predictions with no lake stage: PUT the partition's parquet to a temporary stage, COPY INTO;
- bulk_lake_stage: publish_predictions with MLOPS_WAREHOUSE_LAKE_STAGE, an external stage whose URL is the lake
  root (file:// here, s3:// in production): COPY INTO reads the committed file where it lies.

The paths alternate within each repeat, so all see the same machine load; medians are reported. The emulator
runs an executemany as one INSERT per row, so its rate does not depend on the row count: 20,000 rows measure it
in about 25 s a repeat on a quiet machine (100,000 take two minutes).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_score import with_weather
from mlplatform.config import model_config, settings
from mlplatform.devstack.seed import raw_flights, split_flights
from mlplatform.devstack.stack import Component, free_port, stack_env, start, stop
from mlplatform.lake import FEATURES_AREA, Lake, Partition
from mlplatform.scoring import publish_predictions, score_partition
from mlplatform.warehouse import PREDICTIONS_COLUMNS, PREDICTIONS_TABLE, Warehouse, ensure_predictions_table

MODEL = "flight_delay"
LAKE_STAGE = "FLIGHTS.ML.BENCH_LAKE"


class StandInModel:
    """Scores from the row's features, deterministically: the bench measures publishing, not a model."""

    def predict_proba(self, features):
        p = (np.abs(features.select_dtypes("number").sum(axis=1).to_numpy()) % 1000) / 1000
        return np.column_stack([1 - p, p])


def predictions_partition(lake: Lake, cfg, ds: str, rows: int) -> Partition:
    schedule, _ = split_flights(raw_flights())
    picked = schedule.sample(n=rows, replace=True, random_state=0).reset_index(drop=True)
    picked["FLIGHT_ID"] = np.arange(1, rows + 1)
    features = lake.commit_partition(FEATURES_AREA, cfg.name, ds, with_weather(picked, cfg), {})
    return score_partition(lake, cfg, features, StandInModel(), "1", "bench-run")


def publish_by_executemany(lake: Lake, cfg, part: Partition, batch_rows: int = 100_000) -> int:
    """The path this replaced: the partition read back in batches, each inserted by executemany."""
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        ensure_predictions_table(wh)
        cursor = wh.connection().cursor()
        columns = list(PREDICTIONS_COLUMNS)
        insert = f"INSERT INTO {PREDICTIONS_TABLE} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        cursor.execute("BEGIN")
        try:
            cursor.execute(f"DELETE FROM {PREDICTIONS_TABLE} WHERE MODEL_NAME = %(m)s AND DS = %(ds)s",
                           {"m": cfg.name, "ds": part.ds})
            inserted = 0
            for out in lake.iter_partition_batches(part, batch_rows=batch_rows):
                rows = list(zip(out["model_name"], out["model_version"], out["mlflow_run_id"], [part.ds] * len(out),
                                out[cfg.source.key].astype(str), out["score"].astype(float),
                                out["predicted_label"].astype(int), out["input_partition_hash"]))
                cursor.executemany(insert, rows)
                inserted += len(rows)
            cursor.execute("COMMIT")
        except Exception:
            cursor.execute("ROLLBACK")
            raise
        return inserted
    finally:
        wh.close()


def rows_in_table(ds: str) -> int:
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        sql = f"SELECT COUNT(*) AS N FROM {PREDICTIONS_TABLE} WHERE MODEL_NAME = %(m)s AND DS = %(ds)s"
        return int(wh.query(sql, {"m": MODEL, "ds": ds}).frame["N"].iloc[0])
    finally:
        wh.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old-rows", type=int, default=20_000)
    parser.add_argument("--bulk-rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-publish-") as scratch:
        env = stack_env(Path(scratch), {"warehouse": free_port(), "mlflow": free_port(), "airflow": free_port()})
        os.environ.update(env)
        server = Component("warehouse", int(env["MLOPS_WAREHOUSE_PORT"]),
                           [sys.executable, "-m", "mlplatform.devstack.warehouse",
                            "--port", env["MLOPS_WAREHOUSE_PORT"], "--db-dir", f"{scratch}/warehouse"])
        start(server, env)
        try:
            run(args)
        finally:
            stop(server, env)


def run(args) -> None:
    for noisy in ("snowflake", "mlplatform", "airflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg, lake = model_config(MODEL), Lake(settings().lake_uri)
    old_part = predictions_partition(lake, cfg, "2013-06-01", args.old_rows)
    bulk_part = predictions_partition(lake, cfg, "2013-06-02", args.bulk_rows)
    wh = Warehouse(settings().warehouse_conn_id)
    ensure_predictions_table(wh)
    wh.execute(f"CREATE STAGE IF NOT EXISTS {LAKE_STAGE} URL = '{lake.root_uri}/'")
    wh.close()

    def bulk_lake_stage() -> int:
        os.environ["MLOPS_WAREHOUSE_LAKE_STAGE"] = LAKE_STAGE
        try:
            return publish_predictions(lake, cfg, bulk_part)
        finally:
            del os.environ["MLOPS_WAREHOUSE_LAKE_STAGE"]

    paths = {"executemany": (old_part, lambda: publish_by_executemany(lake, cfg, old_part)),
             "bulk_put": (bulk_part, lambda: publish_predictions(lake, cfg, bulk_part)),
             "bulk_lake_stage": (bulk_part, bulk_lake_stage)}
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, (part, publish) in paths.items():
            started = time.perf_counter()
            published = publish()
            timings[name].append(time.perf_counter() - started)
            in_table = rows_in_table(part.ds)
            if not published == in_table == part.row_count:
                raise SystemExit(f"{name}: published {published}, table holds {in_table}, partition {part.row_count}")
    report(paths, timings)


def report(paths: dict, timings: dict[str, list[float]]) -> None:
    rates = {}
    for name, (part, _) in paths.items():
        median = statistics.median(timings[name])
        rates[name] = part.row_count / median
        print(f"{name}: {rates[name]:.0f} rows/s ({part.row_count} rows, median {median:.2f} s of "
              f"{[round(t, 2) for t in timings[name]]})")
    for name in ("bulk_put", "bulk_lake_stage"):
        print(f"ratio_{name}_over_executemany: {rates[name] / rates['executemany']:.0f}")
    print(f"goal: bulk >= 50000 rows/s: {'met' if min(rates['bulk_put'], rates['bulk_lake_stage']) >= 50_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
