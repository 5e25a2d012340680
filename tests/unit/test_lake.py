import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pandas as pd
import pytest

from mlplatform.faults import PAUSE_AT, PAUSE_FLAG
from mlplatform.lake import MANIFEST, Lake, Partition, UnsafePath, frame_to_parquet
from tests.conftest import REPO
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


# -- confinement, hashes, commits that never hide a day, temporary files ------------------------------------
# These take a `lake` fixture and use only the Lake API, so tests/integration/test_s3_lake.py runs the same
# cases against the S3 server.
DS = "2013-01-05"
PDIR = f"datasets/m/ds={DS}"


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def outside_the_root(lake) -> list[str]:
    """Every file under the lake root's parent directory that is not inside the root."""
    root = lake.root.rstrip("/")
    lake.fs.invalidate_cache()
    return [p for p in lake.fs.find(root.rsplit("/", 1)[0]) if not p.startswith(f"{root}/")]


ESCAPES = ["../outside", "datasets/../../outside", "/etc/passwd", "s3://other-bucket/x", "file:///etc/passwd",
           "datasets//m", "datasets/./m", "datasets/m/", "", f"datasets/m/ds={DS}/../../../../outside/written"]


@pytest.mark.parametrize("relpath", ESCAPES)
def test_paths_that_could_leave_the_root_are_refused(lake, relpath):
    lake.commit_partition("datasets", "m", DS, schedule_rows(5), {})
    for operation in (lambda: lake.write_bytes(relpath, b"x"), lambda: lake.write_json(relpath, {}),
                      lambda: lake.create_exclusive(relpath, b"x"), lambda: lake.read_bytes(relpath),
                      lambda: lake.exists(relpath), lambda: lake.list_dir(relpath), lambda: lake.delete(relpath),
                      lambda: lake.uri(relpath)):
        with pytest.raises(UnsafePath):
            operation()
    assert outside_the_root(lake) == []
    assert lake.partition("datasets", "m", DS) is not None


def test_a_day_that_climbs_out_of_the_lake_commits_nothing(lake):
    """The issue's `ds`: before, it committed a manifest and a parquet file outside the lake."""
    ds = "2013-02-05/../../../../outside/written"
    with pytest.raises(UnsafePath):
        lake.commit_partition("predictions", "m", ds, schedule_rows(5), {})
    with pytest.raises(UnsafePath):
        lake.partition("predictions", "m", ds)
    assert outside_the_root(lake) == [] and lake.list_dir("predictions") == []


def test_paths_read_from_elsewhere_must_lie_in_their_area(lake):
    assert lake.within("reference/m", "reference/m/run=1/reference.parquet") == "reference/m/run=1/reference.parquet"
    for path in ["reference/other/run=1/reference.parquet", "reference/m/../other/reference.parquet", "reference/m",
                 "reference/mx/reference.parquet", "/etc/passwd", "s3://bucket/reference/m/reference.parquet"]:
        with pytest.raises(UnsafePath):
            lake.within("reference/m", path)


def _rewrite_manifest(lake, **changes) -> Partition:
    manifest = {**lake.read_json(f"{PDIR}/{MANIFEST}"), **changes}
    lake.write_json(f"{PDIR}/{MANIFEST}", {k: v for k, v in manifest.items() if v is not None})
    return lake.partition("datasets", "m", DS)


@pytest.mark.parametrize("name", ["../elsewhere.parquet", "sub/part.parquet", "/etc/passwd", "s3://other/x.parquet"])
def test_files_named_by_a_manifest_must_be_plain_names_inside_their_partition(lake, name):
    lake.commit_partition("datasets", "m", DS, schedule_rows(5), {})
    elsewhere = frame_to_parquet(schedule_rows(5, seed=9))  # inside the lake, outside the partition
    lake.write_bytes("datasets/m/elsewhere.parquet", elsewhere)
    digest = hashlib.sha256(elsewhere).hexdigest()
    tampered = _rewrite_manifest(lake, files=[name], content_hash=digest, file_hashes={name: digest})
    with pytest.raises(UnsafePath):
        lake.read_partition(tampered)
    with pytest.raises(UnsafePath):
        next(lake.iter_partition_batches(tampered))


def test_every_file_of_a_manifest_is_hash_checked(lake):
    first = lake.commit_partition("datasets", "m", DS, schedule_rows(seed=1), {})
    second = lake.commit_partition("datasets", "m", DS, schedule_rows(seed=2), {})
    files = first.manifest["files"] + second.manifest["files"]
    both = _rewrite_manifest(lake, files=files, file_hashes={**first.manifest["file_hashes"],
                                                             **second.manifest["file_hashes"]})
    expected = pd.concat([schedule_rows(seed=1), schedule_rows(seed=2)], ignore_index=True)
    pd.testing.assert_frame_equal(lake.read_partition(both), expected)

    lake.write_bytes(f"{PDIR}/{files[1]}", frame_to_parquet(schedule_rows(seed=3)))  # the second file swapped
    with pytest.raises(ValueError, match=f"{files[1]} does not match its recorded content hash"):
        lake.read_partition(both)
    with pytest.raises(ValueError, match=f"{files[1]} does not match its recorded content hash"):
        next(lake.iter_partition_batches(both))
    unhashed = _rewrite_manifest(lake, file_hashes=None)  # several files, no hash for each: refused, not skipped
    with pytest.raises(ValueError, match="no hash for each"):
        lake.read_partition(unhashed)
    with pytest.raises(ValueError, match="no hash for each"):
        next(lake.iter_partition_batches(unhashed))


def test_single_file_manifests_without_file_hashes_are_still_read_and_checked(lake):
    part = lake.commit_partition("datasets", "m", DS, schedule_rows(), {})
    assert part.manifest["file_hashes"] == {part.manifest["files"][0]: part.content_hash}
    older = _rewrite_manifest(lake, file_hashes=None)  # as manifests were written before per-file hashes
    pd.testing.assert_frame_equal(lake.read_partition(older), schedule_rows())
    lake.write_bytes(f"{PDIR}/{part.manifest['files'][0]}", frame_to_parquet(schedule_rows(seed=3)))
    with pytest.raises(ValueError, match="does not match its recorded content hash"):
        lake.read_partition(older)


def test_local_data_files_are_the_checked_bytes_and_copies_do_not_outlive_their_use(lake):
    part = lake.commit_partition("datasets", "m", DS, schedule_rows(seed=1), {})
    data_file = part.manifest["files"][0]
    with lake.local_data_files(part) as paths:
        assert [os.path.basename(p) for p in paths] == [data_file]
        with open(paths[0], "rb") as fh:
            assert fh.read() == lake.read_bytes(f"{PDIR}/{data_file}")
    if not lake.root_uri.startswith("file:"):
        assert not os.path.exists(paths[0]), "a copy of an object-store file is removed after use"

    lake.write_bytes(f"{PDIR}/{data_file}", frame_to_parquet(schedule_rows(seed=3)))
    with pytest.raises(ValueError, match=f"{data_file} does not match its recorded content hash"):
        with lake.local_data_files(part):
            pass


def test_readers_see_the_previous_version_throughout_a_commit(lake):
    old = lake.commit_partition("datasets", "m", DS, schedule_rows(seed=1), {})
    listed = lake.list_dir(PDIR)
    new_rows, seen = schedule_rows(seed=2), []

    def slow_batches():  # a reader looks between every batch of a slow commit
        for start in range(0, len(new_rows), 10):
            visible = lake.partition("datasets", "m", DS)
            seen.append((visible and visible.manifest == old.manifest, lake.days("datasets", "m"), lake.list_dir(PDIR)))
            pd.testing.assert_frame_equal(lake.read_partition(visible), schedule_rows(seed=1))
            yield new_rows.iloc[start:start + 10]

    new = lake.commit_partition_batches("datasets", "m", DS, slow_batches(), {})
    assert seen == [(True, [DS], listed)] * 4
    assert lake.partition("datasets", "m", DS).manifest == new.manifest
    pd.testing.assert_frame_equal(lake.read_partition(new), new_rows)


def test_temporary_files_are_swept_and_never_listed(lake, monkeypatch):
    part = lake.commit_partition("datasets", "m", DS, schedule_rows(5), {})
    hour = 3600 * 10**9
    stale, fresh = f"{time.time_ns() - 2 * hour}-{'a' * 32}", f"{time.time_ns()}-{'b' * 32}"
    for name in (stale, fresh):
        lake.write_bytes(f"_tmp/{name}", b"left by a killed writer")
    lake.write_bytes(f"{PDIR}/part.tmp-{'c' * 32}", b"left by an older version of the lake")
    assert lake.list_dir(PDIR) == [MANIFEST, *part.manifest["files"]]
    assert lake.days("datasets", "m") == [DS]

    assert lake.sweep_temp() == [stale]  # younger than an hour: perhaps a live writer's
    assert lake.list_dir("_tmp") == [fresh]
    lake.write_bytes(f"_tmp/{stale}", b"again")
    lake.commit_partition("datasets", "m", "2013-01-06", schedule_rows(5), {})  # commits sweep as they go
    assert lake.list_dir("_tmp") == [fresh]

    from mlplatform.lake import main

    monkeypatch.setenv("MLOPS_LAKE_URI", lake.root_uri)
    assert main(["sweep-temp", "--older-than-minutes", "0"]) == 0
    assert lake.list_dir("_tmp") == []


WRITER = """
import sys
from mlplatform.lake import Lake
from tests.unit.helpers import schedule_rows
Lake(sys.argv[1]).commit_partition("datasets", "m", "2013-01-05", schedule_rows(seed=2), {"try": 2})
"""


def _paused_writer(lake, point: str, flag):
    """The writer above in its own process, held at ``point`` (mlplatform.faults); returns it once paused."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)]),
           PAUSE_AT: point, PAUSE_FLAG: str(flag)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, lake.root_uri], env=env, stderr=subprocess.PIPE)
    while not flag.exists():
        if writer.poll() is not None:
            raise AssertionError(f"the writer ended before {point}: {writer.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    return writer


@pytest.mark.parametrize("point", ["lake.before_rename", "lake.before_manifest"])
def test_a_writer_killed_mid_commit_leaves_the_previous_version_and_litter_the_sweep_removes(lake, point, tmp_path):
    old = lake.commit_partition("datasets", "m", DS, schedule_rows(seed=1), {"try": 1})
    manifest_bytes, listed = lake.read_bytes(f"{PDIR}/{MANIFEST}"), lake.list_dir(PDIR)
    writer = _paused_writer(lake, point, tmp_path / "paused")
    try:
        assert lake.partition("datasets", "m", DS).manifest == old.manifest  # while it is held there
        os.kill(int((tmp_path / "paused").read_text()), signal.SIGKILL)
        writer.wait()
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    assert lake.read_bytes(f"{PDIR}/{MANIFEST}") == manifest_bytes
    pd.testing.assert_frame_equal(lake.read_partition(lake.partition("datasets", "m", DS)), schedule_rows(seed=1))
    new_hash = hashlib.sha256(frame_to_parquet(schedule_rows(seed=2))).hexdigest()
    if point == "lake.before_rename":  # the data were still in _tmp/: nothing appeared inside the partition
        assert lake.list_dir(PDIR) == listed and len(lake.list_dir("_tmp")) == 1
    else:  # the complete, content-addressed file is in place, but no manifest names it yet
        assert lake.list_dir(PDIR) == sorted([*listed, f"part-{new_hash[:16]}.parquet"])
        assert lake.list_dir("_tmp") == []
    assert lake.days("datasets", "m") == [DS]

    assert lake.sweep_temp() == []  # too young to be sure its writer is dead
    lake.sweep_temp(older_than=timedelta(0))
    assert lake.list_dir("_tmp") == []
    rerun = lake.commit_partition("datasets", "m", DS, schedule_rows(seed=2), {"try": 2})
    assert rerun.content_hash == new_hash
    pd.testing.assert_frame_equal(lake.read_partition(lake.partition("datasets", "m", DS)), schedule_rows(seed=2))
