import pandas as pd

from mlplatform.lake import MANIFEST, Lake
from tests.unit.helpers import schedule_rows


def test_commit_writes_data_then_manifest_and_reads_back(tmp_path):
    lake = Lake(tmp_path.as_uri())
    frame = schedule_rows()
    part = lake.commit_partition("datasets", "m", "2013-01-05", frame, {"source": {"query_id": "q1"}})
    assert part.row_count == len(frame)
    assert part.manifest["source"]["query_id"] == "q1"
    pd.testing.assert_frame_equal(lake.read_partition(lake.partition("datasets", "m", "2013-01-05")), frame)


def test_rerun_is_byte_identical(tmp_path):
    lake = Lake(tmp_path.as_uri())
    first = lake.commit_partition("datasets", "m", "2013-01-05", schedule_rows(), {})
    data_file = tmp_path / "datasets/m/ds=2013-01-05" / first.manifest["files"][0]
    data_before = data_file.read_bytes()
    second = lake.commit_partition("datasets", "m", "2013-01-05", schedule_rows(), {})
    assert first.content_hash == second.content_hash
    assert second.manifest["files"] == first.manifest["files"]
    assert data_file.read_bytes() == data_before


def test_fixed_rerun_adds_a_file_and_keeps_the_old_one_readable(tmp_path):
    lake = Lake(tmp_path.as_uri())
    first = lake.commit_partition("datasets", "m", "2013-01-05", schedule_rows(seed=1), {})
    fixed = lake.commit_partition("datasets", "m", "2013-01-05", schedule_rows(seed=2), {})
    assert fixed.content_hash != first.content_hash
    assert lake.partition("datasets", "m", "2013-01-05").content_hash == fixed.content_hash
    old = lake.read_files("datasets", "m", "2013-01-05", first.manifest["files"], first.content_hash)
    pd.testing.assert_frame_equal(old, schedule_rows(seed=1))


def test_partition_without_manifest_is_invisible(tmp_path):
    lake = Lake(tmp_path.as_uri())
    lake.commit_partition("datasets", "m", "2013-01-05", schedule_rows(), {})
    lake.commit_partition("datasets", "m", "2013-01-06", schedule_rows(), {})
    (tmp_path / "datasets/m/ds=2013-01-06" / MANIFEST).unlink()
    assert [p.ds for p in lake.list_partitions("datasets", "m")] == ["2013-01-05"]
    assert lake.partition("datasets", "m", "2013-01-06") is None
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_list_partitions_is_half_open(tmp_path):
    lake = Lake(tmp_path.as_uri())
    for d in ("2013-01-01", "2013-01-02", "2013-01-03"):
        lake.commit_partition("datasets", "m", d, schedule_rows(5), {})
    assert [p.ds for p in lake.list_partitions("datasets", "m", "2013-01-02", "2013-01-03")] == ["2013-01-02"]
