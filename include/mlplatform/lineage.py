"""Walk the lineage chain both ways.

    python -m mlplatform.lineage prediction MODEL DAY [--key ENTITY_KEY]
        prediction (or a whole day) -> model version -> training run -> training-set version
        -> partitions -> warehouse query ids
    python -m mlplatform.lineage model MODEL VERSION
        model version -> every prediction partition (and row count) it produced

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlplatform.config import model_config, settings
from mlplatform.lake import FEATURES_AREA, PREDICTIONS_AREA, TRAINING_SETS_AREA
from mlplatform.lake import default_lake as lake


def backward(model: str, ds: str, key: str | None = None) -> dict:
    from mlplatform.registry import client

    cfg = model_config(model)
    part = lake().partition(PREDICTIONS_AREA, model, ds)
    if part is None:
        raise LookupError(f"no committed predictions for {model} on {ds}")
    chain: dict = {"predictions": {"ds": ds, "uri": lake().partition_uri(PREDICTIONS_AREA, model, ds),
                                   "rows": part.row_count, "content_hash": part.content_hash}}
    if key is not None:
        rows = lake().read_partition(part)
        match = rows[rows[cfg.source.key].astype(str) == str(key)]
        if match.empty:
            raise LookupError(f"no prediction for {cfg.source.key}={key} on {ds}")
        chain["prediction"] = json.loads(match.iloc[0].to_json(date_format="iso"))
    input_part = lake().partition(FEATURES_AREA, model, ds)
    chain["input_partition"] = {**part.manifest["input_partition"],
                                "query_id": input_part.manifest["source"]["query_id"] if input_part else None,
                                "still_current": bool(input_part and input_part.content_hash == part.manifest["input_partition"]["content_hash"])}
    mlc = client(settings().mlflow_tracking_uri)
    version = mlc.get_model_version(model, part.manifest["model_version"])
    run = mlc.get_run(version.run_id)
    chain["model_version"] = {"version": version.version, "run_id": version.run_id, "aliases": list(version.aliases)}
    chain["training_run"] = {"run_id": run.info.run_id, "trigger_reason": run.data.tags.get("trigger_reason"),
                             "cutoff_ds": run.data.tags.get("cutoff_ds"), "code_version": run.data.tags.get("code_version")}
    ts_version = run.data.tags["dataset_version"]
    ts = lake().read_json(f"{TRAINING_SETS_AREA}/{model}/{ts_version}.json")
    chain["training_set"] = {"version": ts_version, "rows": ts["rows"], "cutoff_ds": ts["cutoff_ds"],
                             "feature_partitions": ts["feature_partitions"], "label_partitions": ts["label_partitions"]}
    pinned = ts["feature_partitions"] + ts["label_partitions"]
    chain["warehouse_query_ids"] = sorted({p[k] for p in pinned for k in ("query_id", "context_query_id") if p.get(k)})
    return chain


def forward(model: str, version: str) -> dict:
    made = []
    for ds in lake().days(PREDICTIONS_AREA, model):
        part = lake().partition(PREDICTIONS_AREA, model, ds)
        if part and part.manifest.get("model_version") == str(version):
            made.append({"ds": ds, "rows": part.row_count, "content_hash": part.content_hash})
    return {"model": model, "version": str(version), "prediction_partitions": made,
            "total_predictions": sum(p["rows"] for p in made)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlplatform.lineage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="direction", required=True)
    back = sub.add_parser("prediction", help="from a day's predictions (or one row) back to the warehouse")
    back.add_argument("model")
    back.add_argument("ds")
    back.add_argument("--key", help="entity key of one prediction row")
    fwd = sub.add_parser("model", help="from a model version to every prediction it made")
    fwd.add_argument("model")
    fwd.add_argument("version")
    args = parser.parse_args(argv)
    try:
        result = backward(args.model, args.ds, args.key) if args.direction == "prediction" else forward(args.model, args.version)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
