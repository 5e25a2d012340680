"""The same data-layer code with the lake on S3: a moto server over real HTTP, reached through s3fs/boto3."""

from __future__ import annotations

import boto3
import pandas as pd
import pytest

from mlplatform.contracts import ContractViolation

pytestmark = pytest.mark.integration
MODEL = "flight_delay"
DAYS = [f"2013-04-{d:02d}" for d in range(1, 13)]


@pytest.fixture
def s3_lake(s3_endpoint, monkeypatch):
    monkeypatch.setenv("MLOPS_LAKE_URI", s3_endpoint)
    return s3_endpoint


def keys(prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket="mlplatform-lake", Prefix=f"lake/{prefix}")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_ingest_writes_data_and_manifest_to_s3(s3_lake, warehouse):
    from mlplatform import ingest
    from mlplatform.lake import default_lake

    result = ingest.ingest_features(MODEL, DAYS[0])
    assert result["uri"].startswith("s3://mlplatform-lake/")
    stored = keys(f"datasets/{MODEL}/ds={DAYS[0]}/")
    assert any(k.endswith("_manifest.json") for k in stored) and any(k.endswith(".parquet") for k in stored)
    manifest = default_lake().partition("datasets", MODEL, DAYS[0]).manifest
    n = warehouse.query("SELECT COUNT(*) AS N FROM FLIGHTS.RAW.FLIGHT_SCHEDULE WHERE FLIGHT_DATE = %(ds)s",
                        {"ds": DAYS[0]}).frame["N"].iloc[0]
    assert manifest["row_count"] == n and manifest["source"]["query_id"]


def test_quarantine_lands_on_s3(s3_lake):
    from dataclasses import replace

    from mlplatform import ingest
    from mlplatform.lake import default_lake
    from mlplatform.config import model_config

    strict = replace(model_config(MODEL).source.contract, max_rows=10)
    start, end = ingest.day_interval(DAYS[1])
    with pytest.raises(ContractViolation, match="row_count"):
        ingest.extract("datasets", MODEL, DAYS[1], model_config(MODEL).source.table, strict, start, end)
    assert sorted(k.rsplit("/", 1)[1] for k in keys(f"quarantine/{MODEL}.features/{DAYS[1]}/")) == ["batch.parquet", "reason.json"]
    assert not keys(f"datasets/{MODEL}/ds={DAYS[1]}/")


def test_training_set_round_trips_through_s3(s3_lake):
    from mlplatform import ingest
    from mlplatform.lake import default_lake
    from mlplatform.config import model_config
    from mlplatform.training import assemble_training_set, load_training_set, save_training_set

    for ds in DAYS[2:]:
        ingest.ingest_labels(MODEL, ds)
        ingest.ingest_features(MODEL, ds)
    cfg = model_config(MODEL)
    ts = assemble_training_set(default_lake(), cfg, DAYS[-1], window_days=8)
    assert len(ts.frame) > 3000
    save_training_set(default_lake(), cfg, ts)
    assert keys(f"training_sets/{MODEL}/{ts.version}.json")
    again = load_training_set(default_lake(), cfg, ts.version)
    pd.testing.assert_frame_equal(again.frame, ts.frame)


# -- the lake's own guarantees, on S3: the same cases as tests/unit/test_lake.py, given an S3 `lake` ----------
from tests.unit.test_lake import (  # noqa: E402  (collected here again, with this module's `lake` fixture)
    test_a_day_that_climbs_out_of_the_lake_commits_nothing,
    test_a_writer_killed_mid_commit_leaves_the_previous_version_and_litter_the_sweep_removes,
    test_every_file_of_a_manifest_is_hash_checked,
    test_files_named_by_a_manifest_must_be_plain_names_inside_their_partition,
    test_local_data_files_are_the_checked_bytes_and_copies_do_not_outlive_their_use,
    test_paths_read_from_elsewhere_must_lie_in_their_area,
    test_paths_that_could_leave_the_root_are_refused,
    test_readers_see_the_previous_version_throughout_a_commit,
    test_single_file_manifests_without_file_hashes_are_still_read_and_checked,
    test_temporary_files_are_swept_and_never_listed,
)


@pytest.fixture
def lake(s3_endpoint):
    """A fresh lake root on the S3 server for each case, inside a directory of its own."""
    import uuid

    from mlplatform.lake import Lake

    return Lake(f"{s3_endpoint}/case-{uuid.uuid4().hex[:12]}/lake")
