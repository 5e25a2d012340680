"""The only code that reads and writes the lake.

One root URI (``file://`` locally, ``s3://`` in production) reached through fsspec.
A partition is a directory ``<area>/<name>/ds=YYYY-MM-DD/`` holding data files and a
``_manifest.json``. Writes are committed data first, manifest last, and readers trust only
manifests: a partition without a manifest does not exist. Data files are named by their content
hash and never overwritten, so a re-run with the same data rewrites the same bytes, and a
re-run with fixed data adds a file while older training-set versions can still read theirs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import fsspec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MANIFEST = "_manifest.json"

# The lake's top-level areas, named once here.
FEATURES_AREA = "datasets"          # ingested feature rows, one partition per day
LABELS_AREA = "labels"              # outcomes, by the day they became available
PREDICTIONS_AREA = "predictions"    # scored days
REPORTS_AREA = "reports"            # daily monitoring reports and summaries
REFERENCE_AREA = "reference"        # drift and validation references of each training run
QUARANTINE_AREA = "quarantine"      # rejected batches and why
TRAINING_SETS_AREA = "training_sets"
PROMOTIONS_AREA = "promotions"      # the append-only promotion log


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
        return "/".join([self.root.rstrip("/"), *parts])

    def uri(self, *parts: str) -> str:
        return "/".join([self.root_uri, *parts])

    def partition_dir(self, area: str, name: str, ds: str) -> str:
        return f"{area}/{name}/ds={ds}"

    def partition_uri(self, area: str, name: str, ds: str) -> str:
        return self.uri(self.partition_dir(area, name, ds))

    # -- atomic primitives -------------------------------------------------
    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write to a temporary name, then move into place, so readers never see a torn file."""
        final = self._path(relpath)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, final)

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
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        try:
            os.link(tmp, final)
        finally:
            os.unlink(tmp)

    def list_dir(self, relpath: str) -> list[str]:
        """Names directly under ``relpath`` (empty if it does not exist), sorted."""
        base = self._path(relpath)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))

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
        """Replace the partition for ``ds``: retract the old manifest, write data, then the manifest."""
        pdir = self.partition_dir(area, name, ds)
        self.delete(f"{pdir}/{MANIFEST}")
        payload = frame_to_parquet(frame)
        content_hash = hashlib.sha256(payload).hexdigest()
        data_file = f"part-{content_hash[:16]}.parquet"
        self.write_bytes(f"{pdir}/{data_file}", payload)
        full = {
            **manifest,
            "area": area,
            "name": name,
            "ds": ds,
            "files": [data_file],
            "row_count": int(len(frame)),
            "content_hash": content_hash,
            "schema_hash": schema_hash(frame),
            "columns": list(frame.columns),
        }
        self.write_json(f"{pdir}/{MANIFEST}", full)
        return Partition(area=area, name=name, ds=ds, manifest=full)

    def commit_partition_batches(self, area: str, name: str, ds: str,
                                 batches: "Iterable[pd.DataFrame | pa.RecordBatch]", manifest: dict) -> Partition:
        """commit_partition for data that arrives in batches: memory holds about one batch, not the partition.

        Each batch becomes a row group of one parquet file, hashed while it is written, so the same batches
        give the same bytes and file name (a single batch gives exactly commit_partition's bytes)."""
        pdir = self.partition_dir(area, name, ds)
        self.delete(f"{pdir}/{MANIFEST}")
        self.fs.makedirs(self._path(pdir), exist_ok=True)
        tmp = self._path(pdir, f"part.tmp-{uuid.uuid4().hex}")
        try:
            with self.fs.open(tmp, "wb") as fh:
                sink = _HashingSink(fh)
                rows, head = _write_parquet_stream(sink, batches)
            content_hash = sink.hexdigest()
            data_file = f"part-{content_hash[:16]}.parquet"
            self.fs.mv(tmp, self._path(pdir, data_file))
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
        full = {**manifest, "area": area, "name": name, "ds": ds, "files": [data_file], "row_count": rows,
                "content_hash": content_hash, "schema_hash": schema_hash(head), "columns": list(head.columns)}
        self.write_json(f"{pdir}/{MANIFEST}", full)
        return Partition(area=area, name=name, ds=ds, manifest=full)

    def iter_partition_batches(self, part: Partition, columns: list[str] | None = None,
                               batch_rows: int = 100_000) -> "Iterator[pd.DataFrame]":
        """A committed partition's rows as frames of at most ``batch_rows`` rows, once its hash checks out."""
        for batch in self.iter_partition_record_batches(part, columns, batch_rows):
            yield batch.to_pandas()

    def iter_partition_record_batches(self, part: Partition, columns: list[str] | None = None,
                                      batch_rows: int = 100_000) -> "Iterator[pa.RecordBatch]":
        """iter_partition_batches as arrow record batches.

        The hash is checked in a streaming pass before the first batch; memory holds about one batch.
        An empty partition yields one empty batch, so callers always see the columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pdir = self.partition_dir(part.area, part.name, part.ds)
        files = part.manifest["files"]
        if len(files) == 1 and self._sha256(f"{pdir}/{files[0]}") != part.content_hash:
            raise ValueError(f"{pdir}/{files[0]} does not match its recorded content hash {part.content_hash[:16]}")
        yielded = False
        for f in files:
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
        return self.read_files(part.area, part.name, part.ds, part.manifest["files"], part.content_hash)

    def read_files(self, area: str, name: str, ds: str, files: list[str], content_hash: str) -> "pd.DataFrame":
        """Read exactly these data files of a partition, checking they still hash to ``content_hash``."""
        import pandas as pd

        pdir = self.partition_dir(area, name, ds)
        payloads = [self.read_bytes(f"{pdir}/{f}") for f in files]
        if len(payloads) == 1 and hashlib.sha256(payloads[0]).hexdigest() != content_hash:
            raise ValueError(f"{pdir}/{files[0]} does not match its recorded content hash {content_hash[:16]}")
        frames = [pd.read_parquet(io.BytesIO(p)) for p in payloads]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def days(self, area: str, name: str) -> list[str]:
        """Every ds directory under area/name, committed or not, oldest first."""
        base = self._path(area, name)
        self.fs.invalidate_cache(base)  # object stores cache listings; another process may have committed since
        if not self.fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("ds=", 1)[1] for p in self.fs.ls(base, detail=False) if "ds=" in p)

    def list_partitions(self, area: str, name: str, start_ds: str | None = None, end_ds: str | None = None) -> list[Partition]:
        """Committed partitions with start_ds <= ds < end_ds, oldest first."""
        days = self.days(area, name)
        selected = [d for d in days if (start_ds is None or d >= start_ds) and (end_ds is None or d < end_ds)]
        parts = [self.partition(area, name, d) for d in selected]
        return [p for p in parts if p is not None]
