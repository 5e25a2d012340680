"""The scoring stage. Batch scoring in bounded memory: a feature partition in, a predictions partition
out, chunk by chunk, then published to the warehouse table.

Each chunk is read, turned into features, scored and written before the next is read, so memory holds
about one chunk whatever the day's size. Every prediction row carries its lineage (model, version, run,
input partition hash), and the predictions manifest records the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlplatform import promotion, registry
from mlplatform.config import ModelConfig, model_config, settings
from mlplatform.dates import checked_ds
from mlplatform.faults import pause_point
from mlplatform.lake import FEATURES_AREA, PREDICTIONS_AREA, Lake, Partition, default_lake
from mlplatform.registry import code_version

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
# Rows per chunk. HistGradientBoosting's predict opens one parallel region per tree, so on a busy machine
# every call pays a synchronisation cost per tree: fewer, larger chunks keep scoring near bare predict
# speed (bench/bench_score.py), at about 2 KiB of peak memory per chunk row.
CHUNK_ROWS = 250_000


def score_partition(lake: Lake, cfg: ModelConfig, part: Partition, model, model_version: str, run_id: str,
                    chunk_rows: int = CHUNK_ROWS) -> Partition:
    """Score feature partition ``part`` with ``model`` and commit the predictions for the same ds."""
    columns = source_columns(cfg)
    missing = [c for c in columns if c not in part.manifest["columns"]]
    if missing:  # before anything is retracted or written
        raise KeyError(f"{part.area}/{part.name}/ds={part.ds} lacks the columns {missing} that scoring {cfg.name} needs")
    lineage = {"model_name": cfg.name, "model_version": str(model_version), "mlflow_run_id": run_id,
               "input_partition_hash": part.content_hash}
    batches = lake.iter_partition_record_batches(part, columns=columns, batch_rows=chunk_rows)
    scored = _scored(batches, cfg, model, lineage)
    return lake.commit_partition_batches(PREDICTIONS_AREA, cfg.name, part.ds, scored, {
        "model_version": str(model_version), "mlflow_run_id": run_id,
        "input_partition": {"ds": part.ds, "content_hash": part.content_hash},
        "code_version": code_version(), "chunk_rows": chunk_rows,
    })


def _scored(batches, cfg: ModelConfig, model, lineage: dict[str, str]):
    for batch in batches:
        yield score_batch(batch, cfg, model, lineage)
        # Reached when the writer asks for the next chunk: this one is in the temporary file, still incomplete.
        pause_point("scoring.chunk_written")


def score_batch(batch: "pa.RecordBatch", cfg: ModelConfig, model, lineage: dict[str, str]) -> "pa.Table":
    """Entity columns, features, score, predicted label and the lineage columns for one batch of raw rows.

    Built in arrow: entity columns pass through unconverted and lineage columns are repeated constants."""
    import numpy as np
    import pyarrow as pa

    from mlplatform.features import build_features
    from mlplatform.evidently_reports import PREDICTION_COLUMN

    features = build_features(batch.select(_feature_columns(cfg)).to_pandas(), cfg)
    scores = model.predict_proba(features)[:, 1] if len(features) else np.empty(0)
    out = {c: batch.column(c) for c in cfg.entity_columns}
    out.update({c: pa.array(features[c]) for c in features.columns})
    out[PREDICTION_COLUMN] = pa.array(scores)
    out["predicted_label"] = pa.array((scores >= cfg.thresholds.decision_threshold).astype("int64"))
    out.update({c: pa.repeat(value, batch.num_rows) for c, value in lineage.items()})
    return pa.table(out)


def source_columns(cfg: ModelConfig) -> list[str]:
    """The feature-partition columns scoring reads: entity columns, then feature sources."""
    return list(dict.fromkeys([*cfg.entity_columns, *_feature_columns(cfg)]))


def _feature_columns(cfg: ModelConfig) -> list[str]:
    return list(dict.fromkeys(f.column for f in cfg.features))


# -- the score DAG's job ------------------------------------------------------------------------------
def score(model: str, ds: str) -> dict | None:
    """Score the day's partition, chunk by chunk, with the version the champion alias points at now (a move
    the promotion log does not know is logged first). None when there is no champion: with no champion in
    the log nor on the alias, that is known before mlflow, sklearn or the warehouse driver is imported."""
    cfg, ds, lake = model_config(model), checked_ds(ds), default_lake()
    if promotion.champion_absent(lake, settings().mlflow_tracking_uri, cfg.name):
        log.warning("%s has no champion yet; nothing to score for %s", model, ds)
        return None
    mlc = registry.client(settings().mlflow_tracking_uri)
    seen = promotion.reconcile(lake, mlc, cfg.name, f"score of {cfg.name} {ds}")
    if seen.champion is None:
        log.warning("%s has no champion yet; nothing to score for %s", model, ds)
        return None
    champion = mlc.get_model_version(cfg.name, seen.champion)
    part = lake.partition(FEATURES_AREA, cfg.name, ds)
    if part is None:
        raise FileNotFoundError(f"{model}: no committed feature partition for {ds}")
    loaded = registry.load_version(cfg.name, champion.version)
    committed = score_partition(lake, cfg, part, loaded, str(champion.version), champion.run_id)
    publish_predictions(lake, cfg, committed)
    log.info("%s %s scored by champion v%s (run %s)", model, ds, champion.version, champion.run_id)
    return {"ds": ds, "rows": committed.row_count, "model_version": str(champion.version),
            "uri": lake.partition_uri(PREDICTIONS_AREA, cfg.name, ds)}


def publish_predictions(lake: Lake, cfg: ModelConfig, predictions: Partition) -> int:
    """Replace the day's rows of the warehouse table with a committed predictions partition, by bulk load:
    COPY INTO from the partition's parquet files, read where they lie through the lake's external stage when
    one is configured (``MLOPS_WAREHOUSE_LAKE_STAGE``), else PUT to a temporary stage first."""
    from mlplatform.evidently_reports import PREDICTION_COLUMN
    from mlplatform.warehouse import (PREDICTIONS_COLUMNS, PREDICTIONS_LOAD_STAGE, PREDICTIONS_TABLE, Warehouse,
                                      ensure_predictions_table, lake_stage_files)

    key = {"MODEL_NAME": cfg.name, "DS": predictions.ds}
    fields = {"MODEL_VERSION": "model_version", "MLFLOW_RUN_ID": "mlflow_run_id", "ENTITY_KEY": cfg.source.key,
              "SCORE": PREDICTION_COLUMN, "PREDICTED_LABEL": "predicted_label",
              "INPUT_PARTITION_HASH": "input_partition_hash"}
    lake_stage = settings().warehouse_lake_stage
    wh = Warehouse(settings().warehouse_conn_id)
    try:
        ensure_predictions_table(wh)
        if lake_stage:
            files = lake.verified_files(predictions)
            pdir = lake.partition_dir(predictions.area, predictions.name, predictions.ds)
            staged = lake_stage_files(lake_stage, pdir, files)
        else:
            with lake.local_data_files(predictions) as paths:
                staged = wh.put_files(PREDICTIONS_LOAD_STAGE, paths)
        return wh.replace_from_stage(PREDICTIONS_TABLE, PREDICTIONS_COLUMNS, key, fields, staged,
                                     expected_rows=predictions.row_count)
    finally:
        wh.close()
