"""What the fault tests share: processes held at a pause point, a reader polling a partition while a fault
happens, the accounting of rows against the source, the local servers' processes, and the summary lines."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

FAULT_MODEL = "fault_model"


# -- the summary --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultResult:
    fault: str
    injected: bool
    survived: bool
    rows_lost: int
    duplicates: int

    def line(self) -> str:
        yes = {True: "yes", False: "no"}
        return (f"FAULT {self.fault} injected={yes[self.injected]} survived={yes[self.survived]} "
                f"rows_lost={self.rows_lost} duplicates={self.duplicates}")


RESULTS: list[FaultResult] = []


def record(fault: str, *, injected: bool, survived: bool, rows_lost: int, duplicates: int) -> FaultResult:
    """Keep the measured values for the session summary, then assert them: the line is printed either way."""
    result = FaultResult(fault, injected, survived, rows_lost, duplicates)
    RESULTS.append(result)
    print(result.line())
    assert injected, f"{fault}: the fault was not injected"
    assert survived, f"{fault}: the re-run did not produce the uninterrupted run's outputs"
    assert (rows_lost, duplicates) == (0, 0), result.line()
    return result


# -- processes held at a pause point ----------------------------------------------------------------------
class HeldProcess:
    """``code`` in a fresh interpreter (this environment plus ``env``) that holds at pause point ``point``.

    The flag file is the hold (mlplatform.faults): ``wait_held`` returns once the process created it,
    ``release`` deletes it, ``kill`` is kill -9. Output goes to a log file, so a released process never
    blocks on a full pipe."""

    def __init__(self, code: str, point: str, workdir: Path, env: dict | None = None):
        self.point, self.flag, self.log = point, workdir / f"held-{point}", workdir / f"held-{point}.log"
        self.flag.unlink(missing_ok=True)
        full_env = {**os.environ, **(env or {}), "MLOPS_PAUSE_AT": point, "MLOPS_PAUSE_FLAG": str(self.flag),
                    "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO)])}
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", code], env=full_env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=workdir)

    def wait_held(self, timeout: float = 300) -> "HeldProcess":
        deadline = time.monotonic() + timeout
        while not self.flag.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"the process ended (exit {self.proc.returncode}) before {self.point}:\n"
                                     f"{self.output()[-3000:]}")
            assert time.monotonic() < deadline, f"{self.point} not reached in {timeout}s"
            time.sleep(0.05)
        assert int(self.flag.read_text()) == self.proc.pid
        return self

    def release(self) -> None:
        self.flag.unlink()

    def kill(self) -> bool:
        """kill -9 (no exception handler, no context manager exit, no atexit hook runs); True once it died of it."""
        os.kill(self.proc.pid, signal.SIGKILL)
        return self.proc.wait() == -signal.SIGKILL

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()


def held_flag_waiter(flag: Path, action, timeout: float = 300) -> threading.Thread:
    """A thread that waits until ``flag`` appears (a process of this one holds at a point), then runs
    ``action``. For holds inside this process, e.g. a task run by ``dag.test``."""
    def wait_then_act():
        deadline = time.monotonic() + timeout
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if flag.exists():
            action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


# -- a reader while the fault happens ---------------------------------------------------------------
class PartitionWatch:
    """Reads a partition over and over from another thread, as any reader would, while the block runs: what
    it saw (None for no partition, else the content hash of a complete, hash-checked read) and every
    failed read (a half-written state)."""

    def __init__(self, lake, area: str, name: str, ds: str, interval: float = 0.02):
        self.lake, self.where, self.interval = lake, (area, name, ds), interval
        self.seen: set[str | None] = set()
        self.reads, self.errors = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                part = self.lake.partition(*self.where)
                if part is None:
                    self.seen.add(None)
                else:
                    rows = len(self.lake.read_partition(part))
                    assert rows == part.row_count, f"{rows} rows read, the manifest says {part.row_count}"
                    self.seen.add(part.content_hash)
            except Exception as exc:  # any failed read is a reader seeing half a commit
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.reads += 1
            time.sleep(self.interval)

    def __enter__(self) -> "PartitionWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- accounting -----------------------------------------------------------------------------------------
def quarantined_rows(lake, dataset: str, ds: str) -> int:
    path = f"quarantine/{dataset}/{ds}/batch.parquet"
    return len(lake.read_frame(path)) if lake.exists(path) else 0


def warehouse_scalar(warehouse, sql: str, params: dict) -> int:
    return int(warehouse.query(sql, params).frame.iloc[0, 0])


def feature_accounting(warehouse, lake, model: str, ds: str) -> tuple[int, int]:
    """(rows lost, duplicates) of a day's feature partition against the warehouse: every source row of the
    day is in the committed partition or in quarantine, once."""
    from mlplatform.config import model_config

    cfg = model_config(model)
    source = warehouse_scalar(warehouse, f"SELECT COUNT(*) FROM {cfg.source.table} WHERE "
                              f"{cfg.source.contract.partition_column} = %(ds)s", {"ds": ds})
    return _partition_accounting(lake, "datasets", model, ds, source, cfg.source.key, cfg.source.contract.dataset)


def label_accounting(warehouse, lake, model: str, ds: str) -> tuple[int, int]:
    """(rows lost, duplicates) of a day's label partition: the outcomes that became available the day before."""
    from mlplatform.config import model_config
    from mlplatform.dates import shift

    cfg = model_config(model)
    at = cfg.labels.available_at
    source = warehouse_scalar(warehouse, f"SELECT COUNT(*) FROM {cfg.labels.table} WHERE {at} >= %(start)s "
                              f"AND {at} < %(end)s", {"start": f"{shift(ds, -1)} 00:00:00", "end": f"{ds} 00:00:00"})
    return _partition_accounting(lake, "labels", model, ds, source, cfg.labels.key, cfg.labels.contract.dataset)


def _partition_accounting(lake, area: str, model: str, ds: str, source_rows: int, key: str,
                          dataset: str) -> tuple[int, int]:
    """(rows lost, duplicates): source rows neither in the committed partition nor quarantined, and partition
    rows beyond one per key."""
    part = lake.partition(area, model, ds)
    frame = lake.read_partition(part) if part else None
    kept = 0 if frame is None else len(frame)
    distinct = 0 if frame is None else frame[key].nunique()
    return source_rows - kept - quarantined_rows(lake, dataset, ds), kept - distinct


def prediction_accounting(warehouse, lake, model: str, ds: str) -> tuple[int, int]:
    """(rows lost, duplicates) of a day's predictions, in the lake and the warehouse table, against the
    day's feature partition: one prediction per ingested row, in each."""
    from mlplatform.config import model_config

    key = model_config(model).source.key
    ingested = lake.read_partition(lake.partition("datasets", model, ds))[key]
    part = lake.partition("predictions", model, ds)
    predicted = lake.read_partition(part)[key] if part else ingested.iloc[:0]
    published = warehouse.query("SELECT ENTITY_KEY FROM FLIGHTS.ML.PREDICTIONS WHERE MODEL_NAME = %(m)s AND "
                                "DS = %(ds)s", {"m": model, "ds": ds}).frame["ENTITY_KEY"]
    lost = len(set(ingested) - set(predicted)) + len(set(ingested.astype(str)) - set(published))
    duplicates = (len(predicted) - predicted.nunique()) + (len(published) - published.nunique())
    return lost, duplicates


def versions_per_key(mlc, model: str, key: str) -> int:
    """Model versions registered by runs carrying the training idempotency key ``key``, whatever became of
    the runs (a version's own tags are set only once its training completes)."""
    from mlplatform.training import IDEMPOTENCY_TAG

    experiment = mlc.get_experiment_by_name(model)
    runs = mlc.search_runs([experiment.experiment_id], f"tags.{IDEMPOTENCY_TAG} = '{key}'")
    return sum(len(mlc.search_model_versions(f"name = '{model}' and run_id = '{run.info.run_id}'")) for run in runs)


def training_rows_lost(mlc, uninterrupted_run: str, run: str) -> int:
    """Rows the uninterrupted training learned from or was judged on that the given training did not."""
    def rows(run_id: str) -> int:
        params = mlc.get_run(run_id).data.params
        return int(params["train_rows"]) + int(params["holdout_rows"])

    return rows(uninterrupted_run) - rows(run)


# -- files ---------------------------------------------------------------------------------------------
def data_file_hashes(lake, area: str, name: str, ds: str) -> dict[str, str]:
    """The committed partition's data files and the sha256 of their bytes, as stored."""
    part = lake.partition(area, name, ds)
    pdir = lake.partition_dir(area, name, ds)
    return {f: hashlib.sha256(lake.read_bytes(f"{pdir}/{f}")).hexdigest() for f in part.manifest["files"]}


def stray_files(lake, area: str, name: str) -> list[str]:
    """Files under area/name that no manifest names: what a dead writer left outside _tmp/."""
    stray = []
    for ds in lake.days(area, name):
        pdir = lake.partition_dir(area, name, ds)
        part = lake.partition(area, name, ds)
        named = set(part.manifest["files"]) | {"_manifest.json"} if part else set()
        stray += [f"{pdir}/{f}" for f in lake.list_dir(pdir) if f not in named]
    return stray


# -- the local servers ------------------------------------------------------------------------------------
def component(env: dict, name: str):
    from mlplatform.devstack.stack import components

    (found,) = [c for c in components(env) if c.name == name]
    return found


def server_pid(env: dict, name: str) -> int:
    return int((Path(env["MLOPS_DATA_DIR"]) / "run" / f"{name}.pid").read_text())
