"""The only code that reads and writes the lake.

One root URI (``file://`` locally, ``s3://`` in production) reached through fsspec.
A partition is a directory ``<area>/<name>/ds=YYYY-MM-DD/`` holding data files and a
``_manifest.json``. Writes are committed data first, manifest last, and readers trust only
manifests: a partition without a manifest does not exist. Data files are named by their content
hash and never overwritten, so a re-run with the same data rewrites the same bytes, and a
re-run with fixed data adds a file while older training-set versions can still read theirs.

A commit never hides a day: the new manifest replaces the old one in one step, and until then
readers see the previous version. Temporary files live under ``_tmp/`` at the root, which no
reader lists, and are swept once older than ``TEMP_MAX_AGE`` (``python -m mlplatform.lake
sweep-temp``, and after every partition commit). Every relative path is checked once, in
``Lake._path``: nothing can name a place outside the root.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Iterable, Iterator

import fsspec

from mlplatform.faults import pause_point

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
TEMP_AREA = "_tmp"                  # writers' temporary files: never listed, never read
# A temporary file older than this belongs to a writer that died. Longer than any write: tasks time out
# after 30 minutes (orchestration.default_args).
TEMP_MAX_AGE = timedelta(hours=1)

# The lake's top-level areas, named once here.
FEATURES_AREA = "datasets"          # ingested feature rows, one partition per day
LABELS_AREA = "labels"              # outcomes, by the day they became available
PREDICTIONS_AREA = "predictions"    # scored days
REPORTS_AREA = "reports"            # daily monitoring reports and summaries
REFERENCE_AREA = "reference"        # drift and validation references of each training run
QUARANTINE_AREA = "quarantine"      # rejected batches and why
TRAINING_SETS_AREA = "training_sets"
PROMOTIONS_AREA = "promotions"      # the append-only promotion log


class UnsafePath(ValueError):
    """A lake path that could name a place outside the lake's root, or outside the area it must lie in."""


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def confined(relpath: str) -> str:
    """``relpath`` if it can only name a place under the root it is joined to, else UnsafePath: no
    absolute path, no scheme (``s3://other/...``, ``file:///etc``), no empty, ``.`` or ``..`` segment."""
    if not isinstance(relpath, str) or not relpath:
        raise UnsafePath(f"not a relative lake path: {relpath!r}")
    if relpath.startswith("/") or _SCHEME.match(relpath) or "\\" in relpath or "\0" in relpath:
        raise UnsafePath(f"lake paths are relative to the lake's root, got {relpath!r}")
    if any(segment in ("", ".", "..") for segment in relpath.split("/")):
        raise UnsafePath(f"lake path {relpath!r} has an empty, '.' or '..' segment")
    return relpath


def plain_name(name: str) -> str:
    """``name`` if it is one path segment (a file name a manifest may list), else UnsafePath."""
    if "/" in confined(name):
        raise UnsafePath(f"{name!r} is not a plain file name")
    return name


def _is_temp_name(name: str) -> bool:
    """The temporary area, or a temporary file written next to its final name before it moved to _tmp/."""
    return name == TEMP_AREA or ".tmp-" in name


@dataclass(frozen=True)
class Partition:
    area: str
    name: str
    ds: str
    manifest: dict

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]

    @property
    def row_count(self) -> int:
        return self.manifest["row_count"]


def frame_to_parquet(frame: "pd.DataFrame") -> bytes:
    """Serialise deterministically: the same frame always gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy", write_statistics=True)
    return buf.getvalue()


def schema_hash(frame: "pd.DataFrame") -> str:
    described = ",".join(f"{c}:{t}" for c, t in zip(frame.columns, frame.dtypes.astype(str)))
    return hashlib.sha256(described.encode()).hexdigest()[:16]


class _HashingSink:
    """A write-only file that passes bytes through to ``fh`` and hashes them on the way."""

    def __init__(self, fh):
        self._fh, self._digest, self._size = fh, hashlib.sha256(), 0
        self.closed = False

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        self._digest.update(data)
        self._fh.write(data)
        self._size += size
        return size

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:  # the caller owns ``fh``
        self.closed = True

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _as_table(batch: "pd.DataFrame | pa.RecordBatch | pa.Table") -> "pa.Table":
    import pyarrow as pa

    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, pa.Table):
        return batch
    return pa.Table.from_pandas(batch, preserve_index=False)


def _write_parquet_stream(sink, batches: Iterable) -> tuple[int, "pd.DataFrame"]:
    """Write batches as row groups of one parquet file (frame_to_parquet's settings).

    Returns the row count and an empty frame with the file's columns and dtypes."""
    import pyarrow.parquet as pq

    writer, rows, head = None, 0, None
    try:
        for batch in batches:
            table = _as_table(batch)
            if writer is None:
                writer = pq.ParquetWriter(sink, table.schema, compression="snappy", write_statistics=True)
                head = batch.iloc[:0] if hasattr(batch, "iloc") else table.schema.empty_table().to_pandas()
            elif not table.schema.equals(writer.schema, check_metadata=False):
                table = table.cast(writer.schema)  # e.g. a column that is all null in this batch only
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("no batches to commit: a partition needs at least one (possibly empty) batch")
    return rows, head


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def default_lake() -> "Lake":
    """The platform's lake, from the settings (MLOPS_LAKE_URI)."""
    from mlplatform.config import settings

    return Lake(settings().lake_uri)


class Lake:
    def __init__(self, root_uri: str, storage_options: dict | None = None):
        self.root_uri = root_uri.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.root_uri, **(storage_options or {}))

    def _path(self, *parts: str) -> str:
        """The one place a relative path becomes a storage path, so the one place it is confined."""
        return "/".join([self.root.rstrip("/"), confined("/".join(parts))])

    def uri(self, *parts: str) -> str:
        return "/".join([self.root_uri, confined("/".join(parts))])

    def within(self, area_dir: str, relpath: str) -> str:
        """``relpath`` if it lies inside ``area_dir`` (for paths read from elsewhere, e.g. MLflow tags)."""
        if not confined(relpath).startswith(f"{confined(area_dir)}/"):
            raise UnsafePath(f"{relpath!r} does not lie inside {area_dir}/")
        return relpath

    def partition_dir(self, area: str, name: str, ds: str) -> str:
        return f"{plain_name(area)}/{plain_name(name)}/ds={plain_name(ds)}"

    def partition_uri(self, area: str, name: str, ds: str) -> str:
        return self.uri(self.partition_dir(area, name, ds))

    # -- atomic primitives -------------------------------------------------
    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write so that readers never see a torn file. An object store's put is atomic; on local disk
        the bytes go to a temporary file under _tmp/, which is then renamed into place."""
        final = self._path(relpath)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if not _is_local(self.fs):
            self.fs.pipe_file(final, data)
            return
        tmp = self._new_temp_path()
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def create_exclusive(self, relpath: str, data: bytes) -> None:
        """Write a new object, failing with FileExistsError if it exists: the compare-and-set primitive
        of append-only logs. Local disk links a complete temporary file into place (atomic and
        exclusive); S3 uses a conditional put (If-None-Match: *)."""
        final = self._path(relpath)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if not _is_local(self.fs):
            with self.fs.open(final, "xb") as fh:
                fh.write(data)
            return
        tmp = self._new_temp_path()
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, final)
        finally:
            os.unlink(tmp)

    def _new_temp_path(self) -> str:
        """A fresh name under _tmp/, starting with its creation time so the sweep can tell its age."""
        self.fs.makedirs(self._path(TEMP_AREA), exist_ok=True)
        return self._path(TEMP_AREA, f"{time.time_ns()}-{uuid.uuid4().hex}")

    def _move_into_place(self, tmp: str, final: str) -> None:
        """One step for readers: a rename on local disk, a single server-side copy on an object store."""
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        if _is_local(self.fs):
            os.replace(tmp, final)
        else:
            self.fs.mv(tmp, final)

    def sweep_temp(self, older_than: timedelta = TEMP_MAX_AGE) -> list[str]:
        """Delete the temporary files older than ``older_than``: what killed writers left behind (a live
        writer's are younger). Returns the names removed."""
        base = self._path(TEMP_AREA)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        cutoff = time.time_ns() - int(older_than.total_seconds() * 1e9)
        stale = [p for p in self.fs.ls(base, detail=False) if _temp_born_ns(p) < cutoff]
        removed = []
        for path in stale:
            try:
                self.fs.rm(path)
            except FileNotFoundError:  # another sweep was first
                continue
            removed.append(path.rsplit("/", 1)[-1])
        if removed:
            log.info("swept %d temporary files older than %s from %s", len(removed), older_than, self.uri(TEMP_AREA))
        return sorted(removed)

    def _sweep_quietly(self) -> None:
        """The opportunistic sweep after a commit: tidying up never fails the commit."""
        try:
            self.sweep_temp()
        except OSError as exc:
            log.warning("could not sweep %s: %s", self.uri(TEMP_AREA), exc)

    def list_dir(self, relpath: str) -> list[str]:
        """Names directly under ``relpath`` (empty if it does not exist), sorted; never a temporary file."""
        base = self._path(relpath)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))
        return sorted(n for n in names if not _is_temp_name(n))

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open(self._path(relpath), "rb") as fh:
            return fh.read()

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self._path(relpath))

    def delete(self, relpath: str) -> None:
        if self.fs.exists(self._path(relpath)):
            self.fs.rm(self._path(relpath), recursive=True)

    def write_json(self, relpath: str, obj) -> None:
        self.write_bytes(relpath, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str):
        return json.loads(self.read_bytes(relpath))

    def write_frame(self, relpath: str, frame: "pd.DataFrame") -> None:
        self.write_bytes(relpath, frame_to_parquet(frame))

    def read_frame(self, relpath: str) -> "pd.DataFrame":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(relpath)))

    # -- partitions ----------------------------------------------------------
    def commit_partition(self, area: str, name: str, ds: str, frame: "pd.DataFrame", manifest: dict) -> Partition:
        """Replace the partition for ``ds`` with ``frame`` (the bytes of ``frame_to_parquet``)."""
        return self.commit_partition_batches(area, name, ds, iter([frame]), manifest)

    def commit_partition_batches(self, area: str, name: str, ds: str,
                                 batches: "Iterable[pd.DataFrame | pa.RecordBatch]", manifest: dict) -> Partition:
        """Replace the partition for ``ds`` with data that arrive in batches: memory holds about one batch.

        Each batch becomes a row group of one parquet file, hashed while it is written, so the same batches
        give the same bytes and file name (a single batch gives exactly ``frame_to_parquet``'s bytes). The
        file is written under _tmp/, moved into the partition under its content hash (a new name, or the
        same bytes again), and the new manifest then replaces the old one in one step. Until that step,
        and if anything fails before it, readers see the previous version, whose files are never touched."""
        pdir = self.partition_dir(area, name, ds)
        data_file, content_hash, rows, head = self._write_data_file(pdir, batches)
        full = {**manifest, "area": area, "name": name, "ds": ds, "files": [data_file], "row_count": rows,
                "content_hash": content_hash, "file_hashes": {data_file: content_hash},
                "schema_hash": schema_hash(head), "columns": list(head.columns)}
        pause_point("lake.before_manifest")
        self.write_json(f"{pdir}/{MANIFEST}", full)
        self._sweep_quietly()
        return Partition(area=area, name=name, ds=ds, manifest=full)

    def _write_data_file(self, pdir: str, batches: Iterable) -> tuple[str, str, int, "pd.DataFrame"]:
        """Stream the batches to one parquet file named by its content hash inside ``pdir``; returns the
        file name, its hash, the row count and an empty frame with the file's columns."""
        tmp = self._new_temp_path()
        try:
            with self.fs.open(tmp, "wb") as fh:
                sink = _HashingSink(fh)
                rows, head = _write_parquet_stream(sink, batches)
            content_hash = sink.hexdigest()
            data_file = f"part-{content_hash[:16]}.parquet"
            pause_point("lake.before_rename")
            self._move_into_place(tmp, self._path(pdir, data_file))
        finally:
            self.fs.invalidate_cache(self._path(TEMP_AREA))
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        return data_file, content_hash, rows, head

    def iter_partition_batches(self, part: Partition, columns: list[str] | None = None,
                               batch_rows: int = 100_000) -> "Iterator[pd.DataFrame]":
        """A committed partition's rows as frames of at most ``batch_rows`` rows, once its hash checks out."""
        for batch in self.iter_partition_record_batches(part, columns, batch_rows):
            yield batch.to_pandas()

    def iter_partition_record_batches(self, part: Partition, columns: list[str] | None = None,
                                      batch_rows: int = 100_000) -> "Iterator[pa.RecordBatch]":
        """iter_partition_batches as arrow record batches.

        Every file's hash is checked in a streaming pass before the first batch; memory holds about one
        batch. An empty partition yields one empty batch, so callers always see the columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pdir = self.partition_dir(part.area, part.name, part.ds)
        expected = _expected_hashes(pdir, part.manifest["files"], part.content_hash, part.manifest.get("file_hashes"))
        for f, digest in expected.items():
            if self._sha256(f"{pdir}/{f}") != digest:
                raise ValueError(f"{pdir}/{f} does not match its recorded content hash {digest[:16]}")
        yielded = False
        for f in expected:
            with self.fs.open(self._path(pdir, f), "rb") as fh:
                pfile = pq.ParquetFile(fh)
                for batch in pfile.iter_batches(batch_size=batch_rows, columns=columns):
                    yielded = True
                    yield batch
        if not yielded:
            schema = pfile.schema_arrow.empty_table().select(columns or pfile.schema_arrow.names).schema
            yield pa.RecordBatch.from_pylist([], schema=schema)

    def _sha256(self, relpath: str) -> str:
        with self.fs.open(self._path(relpath), "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    def partition(self, area: str, name: str, ds: str) -> Partition | None:
        path = f"{self.partition_dir(area, name, ds)}/{MANIFEST}"
        if not self.exists(path):
            return None
        return Partition(area=area, name=name, ds=ds, manifest=self.read_json(path))

    def read_partition(self, part: Partition) -> "pd.DataFrame":
        return self.read_files(part.area, part.name, part.ds, part.manifest["files"], part.content_hash,
                               part.manifest.get("file_hashes"))

    def read_files(self, area: str, name: str, ds: str, files: list[str], content_hash: str,
                   file_hashes: dict[str, str] | None = None) -> "pd.DataFrame":
        """Read exactly these data files of a partition, checking each still hashes to what was recorded:
        ``file_hashes`` (one hash per file), or for a single file without them, ``content_hash``."""
        import pandas as pd

        pdir = self.partition_dir(area, name, ds)
        frames = []
        for f, digest in _expected_hashes(pdir, files, content_hash, file_hashes).items():
            payload = self.read_bytes(f"{pdir}/{f}")
            if hashlib.sha256(payload).hexdigest() != digest:
                raise ValueError(f"{pdir}/{f} does not match its recorded content hash {digest[:16]}")
            frames.append(pd.read_parquet(io.BytesIO(payload)))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def days(self, area: str, name: str) -> list[str]:
        """Every ds directory under area/name, committed or not, oldest first."""
        return [n.removeprefix("ds=") for n in self.list_dir(f"{area}/{name}") if n.startswith("ds=")]

    def day_range(self, area: str, name: str) -> tuple[str, str] | None:
        """The first and last committed days under area/name, or None if there are none. Cheap: one listing,
        then a manifest check from each end until a committed day is found."""
        days = self.days(area, name)

        def committed(ds: str) -> bool:
            return self.exists(f"{self.partition_dir(area, name, ds)}/{MANIFEST}")

        first = next((ds for ds in days if committed(ds)), None)
        if first is None:
            return None
        return first, next(ds for ds in reversed(days) if committed(ds))

    def list_partitions(self, area: str, name: str, start_ds: str | None = None, end_ds: str | None = None) -> list[Partition]:
        """Committed partitions with start_ds <= ds < end_ds, oldest first."""
        days = self.days(area, name)
        selected = [d for d in days if (start_ds is None or d >= start_ds) and (end_ds is None or d < end_ds)]
        parts = [self.partition(area, name, d) for d in selected]
        return [p for p in parts if p is not None]


def _expected_hashes(pdir: str, files: list[str], content_hash: str,
                     file_hashes: dict[str, str] | None) -> dict[str, str]:
    """What each file a manifest lists must hash to. Every name must be a plain file name inside the
    partition. Manifests record a hash per file; older ones list one file, whose hash is the content hash."""
    if not files:
        raise ValueError(f"{pdir}: the manifest lists no data file")
    for f in files:
        plain_name(f)
    if file_hashes is not None:
        unhashed = [f for f in files if f not in file_hashes]
        if unhashed:
            raise ValueError(f"{pdir}: the manifest records no hash for {unhashed}")
        return {f: file_hashes[f] for f in files}
    if len(files) > 1:
        raise ValueError(f"{pdir}: the manifest lists {len(files)} files but no hash for each")
    return {files[0]: content_hash}


def _temp_born_ns(path: str) -> int:
    """When a temporary file was created, from its name; a name the lake did not make counts as new."""
    stamp = path.rstrip("/").rsplit("/", 1)[-1].split("-", 1)[0]
    return int(stamp) if stamp.isdigit() else time.time_ns()


def main(argv: list[str] | None = None) -> int:
    """``python -m mlplatform.lake sweep-temp [--older-than-minutes N]``: sweep the platform lake's _tmp/."""
    parser = argparse.ArgumentParser(prog="python -m mlplatform.lake")
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep-temp", help="delete temporary files that killed writers left behind")
    sweep.add_argument("--older-than-minutes", type=float, default=TEMP_MAX_AGE.total_seconds() / 60)
    args = parser.parse_args(argv)
    lake = default_lake()
    removed = lake.sweep_temp(timedelta(minutes=args.older_than_minutes))
    print(f"removed {len(removed)} temporary files from {lake.uri(TEMP_AREA)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
