import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlplatform.config import model_config
from mlplatform.features import build_features
from mlplatform.lake import Lake, frame_to_parquet, schema_hash
from mlplatform.evidently_reports import PREDICTION_COLUMN
from mlplatform.registry import code_version
from mlplatform.lake import PREDICTIONS_AREA
from mlplatform.scoring import score_partition
from mlplatform.training import fit
from tests.unit.helpers import schedule_rows

CFG = model_config("flight_delay")
DS = "2013-01-09"
ROWS = 50  # not a multiple of the chunk size: the last chunk is short
LINEAGE = {"model_name": CFG.name, "model_version": "3", "mlflow_run_id": "run-abc"}


@pytest.fixture(scope="module")
def model():
    train = pd.concat([schedule_rows(150, f"2013-01-0{d}", seed=d) for d in range(1, 6)], ignore_index=True)
    noise = np.random.default_rng(7).random(len(train)) < 0.15
    late = ((train["SCHED_DEP_TIME"] > 1500) | (train["ORIGIN"] == "EWR")) ^ noise
    return fit(train.assign(**{CFG.target.name: late.astype(float)}), CFG)


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path.as_uri())


@pytest.fixture
def raw():
    return schedule_rows(ROWS, DS, seed=11)


def _score(lake, part, model, chunk_rows):
    return score_partition(lake, CFG, part, model, LINEAGE["model_version"], LINEAGE["mlflow_run_id"], chunk_rows)


def _expected(raw, model, input_hash):
    """The predictions as scoring.score builds them: the whole day in memory at once."""
    features = build_features(raw, CFG)
    scores = model.predict_proba(features)[:, 1]
    out = raw[list(CFG.entity_columns)].copy()
    out[features.columns] = features
    out[PREDICTION_COLUMN] = scores
    out["predicted_label"] = (scores >= CFG.thresholds.decision_threshold).astype("int64")
    return out.assign(**LINEAGE, input_partition_hash=input_hash)


def _file(lake, part):
    return f"{lake.root}/{lake.partition_dir(part.area, part.name, part.ds)}/{part.manifest['files'][0]}"


def test_chunked_scores_equal_unchunked_and_in_memory_scoring(lake, raw, model):
    part = lake.commit_partition("datasets", CFG.name, DS, raw, {})
    chunked = _score(lake, part, model, chunk_rows=7)
    chunked_frame = lake.read_partition(chunked)
    whole = _score(lake, part, model, chunk_rows=100_000)

    assert pq.ParquetFile(_file(lake, chunked)).num_row_groups == 8  # really written chunk by chunk
    assert pq.ParquetFile(_file(lake, whole)).num_row_groups == 1
    assert chunked_frame[PREDICTION_COLUMN].nunique() > 10 and chunked_frame["predicted_label"].nunique() == 2
    pd.testing.assert_frame_equal(chunked_frame, lake.read_partition(whole), check_exact=True)
    pd.testing.assert_frame_equal(chunked_frame, _expected(raw, model, part.content_hash), check_exact=True)


def test_rerun_writes_byte_identical_predictions(lake, raw, model):
    part = lake.commit_partition("datasets", CFG.name, DS, raw, {})
    first = _score(lake, part, model, chunk_rows=7)
    with open(_file(lake, first), "rb") as fh:
        before = fh.read()
    second = _score(lake, part, model, chunk_rows=7)
    with open(_file(lake, second), "rb") as fh:
        after = fh.read()
    assert second.manifest["files"] == first.manifest["files"]
    assert second.content_hash == first.content_hash == hashlib.sha256(after).hexdigest()
    assert after == before


def test_manifest_is_committed_with_lineage_and_row_counts(lake, raw, model):
    part = lake.commit_partition("datasets", CFG.name, DS, raw, {})
    committed = _score(lake, part, model, chunk_rows=7)
    manifest = lake.partition(PREDICTIONS_AREA, CFG.name, DS).manifest
    expected = _expected(raw, model, part.content_hash)

    assert manifest == committed.manifest
    assert manifest["row_count"] == ROWS == len(lake.read_partition(committed))
    assert manifest["model_version"] == "3" and manifest["mlflow_run_id"] == "run-abc"
    assert manifest["input_partition"] == {"ds": DS, "content_hash": part.content_hash}
    assert manifest["code_version"] == code_version() and manifest["chunk_rows"] == 7
    assert (manifest["area"], manifest["name"], manifest["ds"]) == (PREDICTIONS_AREA, CFG.name, DS)
    assert manifest["columns"] == list(expected.columns)
    assert manifest["schema_hash"] == schema_hash(expected)  # what commit_partition would record


def test_tampered_input_is_refused_and_the_earlier_predictions_stay(lake, raw, model):
    part = lake.commit_partition("datasets", CFG.name, DS, raw, {})
    earlier = _score(lake, part, model, chunk_rows=7)
    edited = raw.assign(DISTANCE=raw["DISTANCE"] + 1)  # a valid parquet file, silently swapped in
    with open(_file(lake, part), "wb") as fh:
        fh.write(frame_to_parquet(edited))

    with pytest.raises(ValueError, match="does not match its recorded content hash"):
        next(lake.iter_partition_batches(part))
    with pytest.raises(ValueError, match="does not match its recorded content hash"):
        _score(lake, part, model, chunk_rows=7)
    assert lake.partition(PREDICTIONS_AREA, CFG.name, DS).manifest == earlier.manifest  # never hidden
    pd.testing.assert_frame_equal(lake.read_partition(earlier), _expected(raw, model, part.content_hash))
    assert lake.list_dir("_tmp") == [] and not lake.fs.ls(f"{lake.root}/_tmp")


def test_a_partition_without_a_needed_column_is_refused_before_anything_is_retracted(lake, raw, model):
    earlier = _score(lake, lake.commit_partition("datasets", CFG.name, DS, raw, {}), model, chunk_rows=7)
    part = lake.commit_partition("datasets", CFG.name, DS, raw.drop(columns=["ORIGIN_WX_TEMP"]), {})
    with pytest.raises(KeyError, match="ORIGIN_WX_TEMP"):
        _score(lake, part, model, chunk_rows=7)
    assert lake.partition(PREDICTIONS_AREA, CFG.name, DS).manifest == earlier.manifest


def test_empty_feature_partition_gives_empty_predictions(lake, raw, model):
    part = lake.commit_partition("datasets", CFG.name, DS, raw.iloc[:0], {})
    committed = _score(lake, part, model, chunk_rows=7)
    assert committed.row_count == 0
    assert committed.manifest["columns"] == list(_expected(raw, model, part.content_hash).columns)


# -- the streaming lake primitives ---------------------------------------------------------------
def test_one_batch_streams_exactly_the_bytes_commit_partition_writes(lake, raw):
    whole = lake.commit_partition("datasets", "m", DS, raw, {"k": 1})
    streamed = lake.commit_partition_batches("datasets", "s", DS, iter([raw]), {"k": 1})
    assert streamed.content_hash == whole.content_hash == hashlib.sha256(frame_to_parquet(raw)).hexdigest()
    assert streamed.manifest == {**whole.manifest, "name": "s"}
    assert whole.manifest["schema_hash"] == schema_hash(raw) and whole.manifest["row_count"] == ROWS


def test_batches_stream_in_and_out_in_bounded_chunks(lake, raw):
    chunks = [raw.iloc[i:i + 7] for i in range(0, ROWS, 7)]
    chunks[1] = pa.RecordBatch.from_pandas(chunks[1], preserve_index=False)  # arrow batches are accepted too
    chunks[2] = chunks[2].assign(TAILNUM=None)  # all null in one later batch only: cast to the file's type
    part = lake.commit_partition_batches("datasets", "m", DS, iter(chunks), {})
    expected = raw.copy()
    expected.loc[14:20, "TAILNUM"] = None

    out = list(lake.iter_partition_batches(part, batch_rows=5))
    assert max(len(f) for f in out) == 5 and len(out) >= ROWS // 5
    pd.testing.assert_frame_equal(pd.concat(out, ignore_index=True), expected)
    assert part.row_count == ROWS
    some = pd.concat(lake.iter_partition_batches(part, columns=["FLIGHT_ID", "ORIGIN"]), ignore_index=True)
    pd.testing.assert_frame_equal(some, expected[["FLIGHT_ID", "ORIGIN"]])


def test_failed_stream_keeps_the_previous_version_and_leaves_no_temp_file(lake, raw):
    old = lake.commit_partition("datasets", "m", DS, raw, {})
    listed = lake.list_dir(f"datasets/m/ds={DS}")

    def broken():
        yield raw.iloc[:7]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="went away"):
        lake.commit_partition_batches("datasets", "m", DS, broken(), {})
    assert lake.partition("datasets", "m", DS).manifest == old.manifest
    assert lake.list_dir(f"datasets/m/ds={DS}") == listed
    assert not lake.fs.ls(f"{lake.root}/_tmp")
    pd.testing.assert_frame_equal(lake.read_files("datasets", "m", DS, old.manifest["files"], old.content_hash), raw)
    with pytest.raises(ValueError, match="at least one"):
        lake.commit_partition_batches("datasets", "m", DS, iter([]), {})


@pytest.mark.integration
def test_streaming_commit_and_read_on_s3(raw):
    """The same calls through s3fs against a moto S3 server on the loopback."""
    from moto.server import ThreadedMotoServer  # pinned in requirements.txt: missing means a broken install

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        lake = Lake("s3://bench-lake/lake", {"key": "testing", "secret": "testing",
                                             "endpoint_url": f"http://{host}:{port}"})
        lake.fs.mkdir("bench-lake")
        part = lake.commit_partition_batches("datasets", "m", DS, (raw.iloc[i:i + 7] for i in range(0, ROWS, 7)), {})
        with lake.fs.open(_file(lake, part), "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == part.content_hash
        assert lake.partition("datasets", "m", DS).manifest == part.manifest
        back = pd.concat(lake.iter_partition_batches(part, batch_rows=10), ignore_index=True)
        pd.testing.assert_frame_equal(back, raw)
        assert not [p for p in lake.fs.find(lake.root) if "/_tmp/" in p or ".tmp-" in p]
    finally:
        server.stop()
