"""Moving the ``champion`` alias, with an append-only promotion log in the lake.

Each move is one immutable log entry ``promotions/<model>/<seq>.json``: when, who or what, why, from
which version to which, and the evidence. Entries are created exclusively (a conditional put on S3,
an atomic link on local disk), so two promotions decided against the same log head cannot both
claim the next entry: the loser gets PromotionConflict and the alias is left alone. Before claiming,
the alias is re-read: if it no longer points where the decision saw it (another promotion, a
rollback, or a person in the MLflow UI), the decision is stale and is refused too.

A move is two steps: claim the entry, then move the alias; a marker ``<seq>.applied`` says the second
step is done. Every task that reads ``champion`` first calls ``reconcile``: an alias that differs from
the log's last entry was moved outside the platform (by hand in the MLflow UI, say), and is appended as
an ``external_move`` entry through the same exclusive create, so the log stays complete. An entry not
yet applied whose alias still points at its ``from_version`` is a move in flight (or one whose task
died and will be re-run): that is not an external move.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mlplatform import registry
from mlplatform.faults import pause_point
from mlplatform.lake import PROMOTIONS_AREA

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlplatform.lake import Lake

log = logging.getLogger(__name__)

EXTERNAL_MOVE = "external_move"
# A reconciling reader that loses the race for the next entry re-reads; each loss means the log grew.
RECONCILE_ATTEMPTS = 5


class PromotionConflict(RuntimeError):
    """The champion or the promotion log changed since the decision was taken."""


class MoveRefused(ValueError):
    """The requested move cannot be made (no such version, already champion, no previous champion)."""


# Errors that a retry cannot fix: the task fails at once (the DAGs raise AirflowFailException on them).
FAIL_FAST = (PromotionConflict, MoveRefused)


@dataclass(frozen=True)
class Snapshot:
    """What a decision was based on: the champion then, and the log head then."""
    champion: str | None
    log_head: int


@dataclass(frozen=True)
class PromotionEntry:
    seq: int
    model: str
    action: str              # promote | manual_promote | rollback | external_move
    from_version: str | None
    to_version: str | None   # None only for an external_move that removed the alias
    actor: str               # e.g. "airflow:flight_delay__train/manual__2013-..." or "airflow-user:admin"
    reason: str
    at: str
    evidence: dict = field(default_factory=dict)


def _entry_path(model: str, seq: int) -> str:
    return f"{PROMOTIONS_AREA}/{model}/{seq:08d}.json"


def _applied_path(model: str, seq: int) -> str:
    return f"{PROMOTIONS_AREA}/{model}/{seq:08d}.applied"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def entries(lake: "Lake", model: str) -> list[dict]:
    """The whole log, oldest first."""
    names = [n for n in lake.list_dir(f"{PROMOTIONS_AREA}/{model}") if n.endswith(".json")]
    return [lake.read_json(f"{PROMOTIONS_AREA}/{model}/{n}") for n in names]


def log_head(lake: "Lake", model: str) -> int:
    names = [n for n in lake.list_dir(f"{PROMOTIONS_AREA}/{model}") if n.endswith(".json")]
    return int(names[-1].split(".")[0]) if names else 0


def _champion_now(mlc: "MlflowClient", model: str) -> str | None:
    current = registry.version_by_alias(mlc, model, registry.CHAMPION)
    return str(current.version) if current else None


def snapshot(lake: "Lake", mlc: "MlflowClient", model: str) -> Snapshot:
    """Read the log head before the alias: a promotion in flight has claimed its entry before it moves the alias."""
    head = log_head(lake, model)
    return Snapshot(champion=_champion_now(mlc, model), log_head=head)


def champion_absent(lake: "Lake", tracking_uri: str, model: str) -> bool:
    """True when ``model`` certainly has no champion and ``reconcile`` would have nothing to log: the log's
    last entry leaves no champion (or there is none) and the alias is not set. Needs neither mlflow nor
    pandas (registry.alias_absent), so a run with nothing to score ends in a fraction of a second. False
    whenever either says otherwise or cannot tell: the caller then reconciles and decides as always."""
    seq = log_head(lake, model)
    head = lake.read_json(_entry_path(model, seq)) if seq else None
    applied = bool(seq) and lake.exists(_applied_path(model, seq))
    return _in_step(head, applied, None) and registry.alias_absent(tracking_uri, model, registry.CHAMPION)


def _in_step(head: dict | None, applied: bool, champion: str | None) -> bool:
    """Whether the log's last entry agrees with the alias: it points where the entry moved it, or the
    entry's move is still in flight (claimed, not applied, the alias still where the move starts)."""
    logged = head["to_version"] if head else None
    if champion == logged:
        return True
    return head is not None and head["action"] != EXTERNAL_MOVE and not applied and champion == head["from_version"]


def _task_detecting(detected_by: str) -> str:
    """``detected_by``, with the Airflow task instance when this runs inside an Airflow task."""
    if "airflow.sdk" not in sys.modules:  # not in a task: never pay for importing Airflow here
        return detected_by
    from airflow.sdk import get_current_context

    try:
        ti = get_current_context()["ti"]
    except RuntimeError:  # Airflow is loaded, but no task is running
        return detected_by
    return f"{detected_by} in airflow:{ti.dag_id}.{ti.task_id}/{ti.run_id} try {ti.try_number}"


def reconcile(lake: "Lake", mlc: "MlflowClient", model: str, detected_by: str) -> Snapshot:
    """The champion and the log head, once the log records where the alias points.

    An alias moved outside the platform is appended as an ``external_move`` entry (from the log's
    champion to the alias now, when and by which task it was detected) before the caller goes on. Two
    readers detecting the same move race for the same entry: the loser re-reads and finds it."""
    for _ in range(RECONCILE_ATTEMPTS):
        seq = log_head(lake, model)  # the head, its marker, then the alias: see _in_step
        head = lake.read_json(_entry_path(model, seq)) if seq else None
        applied = bool(seq) and lake.exists(_applied_path(model, seq))
        champion = _champion_now(mlc, model)
        if _in_step(head, applied, champion):
            return Snapshot(champion=champion, log_head=seq)
        if _record_external_move(lake, model, seq + 1, head["to_version"] if head else None, champion, detected_by):
            return Snapshot(champion=champion, log_head=seq + 1)
    raise PromotionConflict(f"{model}: the promotion log kept changing while reconciling it with the champion alias")


def _record_external_move(lake: "Lake", model: str, seq: int, logged: str | None, champion: str | None,
                          detected_by: str) -> bool:
    """Append the external move as entry ``seq``; False if another task claimed ``seq`` first."""
    detected_at, task = _now(), _task_detecting(detected_by)
    entry = PromotionEntry(
        seq=seq, model=model, action=EXTERNAL_MOVE, from_version=logged, to_version=champion,
        actor="unknown: outside the platform", at=detected_at,
        reason=(f"the champion alias points at {_v(champion)}, not at {_v(logged)} as the promotion log says: "
                f"moved outside the platform (e.g. by hand in the MLflow UI); detected by {task}"),
        evidence={"detected_by": task, "detected_at": detected_at})
    try:
        lake.create_exclusive(_entry_path(model, seq), json.dumps(asdict(entry), indent=2, default=str).encode())
    except FileExistsError:
        return False
    log.warning("%s: champion moved outside the platform, %s -> %s; logged as entry %d", model, _v(logged),
                _v(champion), seq)
    return True


def _v(version: str | None) -> str:
    return f"v{version}" if version else "no champion"


def move_champion(lake: "Lake", mlc: "MlflowClient", model: str, to_version: str, seen: Snapshot,
                  action: str, actor: str, reason: str, evidence: dict | None = None) -> PromotionEntry:
    """Compare-and-set: move ``champion`` to ``to_version`` only if nothing moved since ``seen``."""
    current_version = _champion_now(mlc, model)
    if current_version != seen.champion:
        raise PromotionConflict(f"{model}: champion is v{current_version}, not v{seen.champion} as when the "
                                f"decision to move it to v{to_version} was taken")
    entry = PromotionEntry(seq=seen.log_head + 1, model=model, action=action, from_version=current_version,
                           to_version=str(to_version), actor=actor, reason=reason, at=_now(),
                           evidence=evidence or {})
    try:
        lake.create_exclusive(_entry_path(model, entry.seq), json.dumps(asdict(entry), indent=2, default=str).encode())
    except FileExistsError:
        raise PromotionConflict(f"{model}: promotion log entry {entry.seq} was claimed by another promotion "
                                f"since the decision to move champion to v{to_version}") from None
    _apply(lake, mlc, entry)
    log.info("%s: champion v%s -> v%s (%s by %s): %s", model, current_version, to_version, action, actor, reason)
    return entry


def _apply(lake: "Lake", mlc: "MlflowClient", entry: PromotionEntry) -> None:
    """The second step of a move: point the alias where the entry says, then mark the entry applied.
    Only while the entry is the log's last: a later entry has moved the alias since."""
    pause_point("promotion.before_alias")
    if log_head(lake, entry.model) != entry.seq:
        return
    if _champion_now(mlc, entry.model) != entry.to_version:
        registry.set_alias(mlc, entry.model, registry.CHAMPION, entry.to_version)
    lake.write_bytes(_applied_path(entry.model, entry.seq), entry.at.encode())


def logged_move(lake: "Lake", mlc: "MlflowClient", model: str, seen: Snapshot, to_version: str,
                run_id: str) -> PromotionEntry | None:
    """On a re-run of a promotion: the entry it already logged (the one right after ``seen``, to the same
    version, for the same training run), or None. If the first try died between the log and the alias,
    the alias is moved now, unless a later entry has moved it since."""
    path = _entry_path(model, seen.log_head + 1)
    if not lake.exists(path):
        return None
    entry = PromotionEntry(**lake.read_json(path))
    if entry.to_version != str(to_version) or entry.evidence.get("run_id") != run_id:
        return None
    _apply(lake, mlc, entry)
    return entry


def _own_rollback(lake: "Lake", mlc: "MlflowClient", model: str, airflow_run: str) -> PromotionEntry | None:
    """On a re-run of a rollback: the entry this Airflow run logged, finished if its first try died
    between the log and the alias; None if it logged none."""
    for raw in reversed(entries(lake, model)):
        if raw["action"] == "rollback" and raw.get("evidence", {}).get("airflow_run") == airflow_run:
            entry = PromotionEntry(**raw)
            _apply(lake, mlc, entry)
            return entry
    return None


def previous_champion(lake: "Lake", model: str, current: str | None) -> str:
    """The version that was champion before ``current`` became champion, per the log."""
    for entry in reversed(entries(lake, model)):
        if entry["to_version"] == current and entry["from_version"]:
            return entry["from_version"]
    raise MoveRefused(f"{model}: the promotion log records no champion before v{current}; name a version explicitly")


def roll_back(lake: "Lake", mlc: "MlflowClient", model: str, target: str, actor: str, reason: str,
              airflow_run: str | None = None) -> tuple[PromotionEntry, bool]:
    """Point ``champion`` back at ``target`` (a version number, or "previous" per the promotion log) through
    the logged-move protocol. Returns the entry and whether this call logged it: a re-run of the same
    Airflow run finds the entry its first try logged and finishes that move instead of making another."""
    seen = reconcile(lake, mlc, model, f"rollback of {model}")
    if airflow_run:
        done = _own_rollback(lake, mlc, model, airflow_run)
        if done is not None:
            return done, False
    version = previous_champion(lake, model, seen.champion) if target == "previous" else str(target)
    _check_version_exists(mlc, model, version)
    if version == seen.champion:
        raise MoveRefused(f"{model}: v{version} is already the champion")
    evidence = {"airflow_run": airflow_run} if airflow_run else {}
    return move_champion(lake, mlc, model, version, seen, "rollback", actor, reason, evidence), True


def _check_version_exists(mlc: "MlflowClient", model: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlc.get_model_version(model, version)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise MoveRefused(f"{model}: there is no version {version}") from exc
        raise


# -- the jobs of the train DAG's ``promote`` task and of the rollback DAG --------------------------------
def promote(model: str, outcome: dict, force: bool, actor: str) -> dict:
    """Move ``champion`` to the challenger if the gate passed (or a person forced it), through the
    promotion log's compare-and-set. A refused or stale challenger leaves the champion untouched."""
    from mlplatform import alerts
    from mlplatform.config import model_config, settings
    from mlplatform.lake import default_lake

    cfg, lake = model_config(model), default_lake()
    gate, version = outcome["gate"], outcome["version"]
    mlc = registry.client(settings().mlflow_tracking_uri)
    reconcile(lake, mlc, cfg.name, f"promote of {cfg.name} v{version}")
    if not (gate["promote"] or force):
        alerts.gate_alert(cfg.name, version, outcome, promoted=False, action="reject", actor=actor,
                          from_version=outcome["seen"]["champion"])
        return {"promoted": False, "version": version, "reason": gate["reason"]}
    action = "promote" if gate["promote"] else "manual_promote"
    why = gate["reason"] if gate["promote"] else f"forced by {actor} although the gate refused: {gate['reason']}"
    seen = Snapshot(**outcome["seen"])
    done = logged_move(lake, mlc, cfg.name, seen, version, outcome["run_id"])
    if done is not None:  # a re-run of this task: the move is in the log already, and now applied
        mlc.set_model_version_tag(cfg.name, version, "promoted_by", f"{done.action}:{done.actor}")
        return {"promoted": True, "version": version, "from_version": done.from_version, "seq": done.seq,
                "action": done.action}
    entry = move_champion(lake, mlc, cfg.name, version, seen, action, actor, why,
                          evidence={**gate, "run_id": outcome["run_id"], "cutoff_ds": outcome["cutoff_ds"],
                                    "trigger_reason": outcome["reason"]})
    mlc.set_model_version_tag(cfg.name, version, "promoted_by", f"{action}:{actor}")
    alerts.gate_alert(cfg.name, version, outcome, promoted=True, action=action, actor=actor,
                      from_version=entry.from_version)
    return {"promoted": True, "version": version, "from_version": entry.from_version, "seq": entry.seq,
            "action": action}


def rollback(model: str, target: str, actor: str, reason: str, airflow_run: str | None = None) -> dict:
    """Point ``champion`` back at ``target`` (a version number, or "previous" per the promotion log).
    ``airflow_run`` identifies the Airflow run, so that a retry finishes its own move rather than making another."""
    from mlplatform import alerts
    from mlplatform.config import model_config, settings
    from mlplatform.lake import default_lake

    cfg, lake = model_config(model), default_lake()
    mlc = registry.client(settings().mlflow_tracking_uri)
    entry, logged_now = roll_back(lake, mlc, cfg.name, target, actor, reason, airflow_run)
    if logged_now:
        alerts.rollback_alert(cfg.name, entry.from_version, entry.to_version, actor, reason)
    return asdict(entry)
