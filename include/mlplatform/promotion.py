"""Moving the ``champion`` alias, with an append-only promotion log in the lake.

Each move is one immutable log entry ``promotions/<model>/<seq>.json``: when, who or what, why, from
which version to which, and the evidence. Entries are created exclusively (a conditional put on S3,
an atomic link on local disk), so two promotions decided against the same log head cannot both
claim the next entry: the loser gets PromotionConflict and the alias is left alone. Before claiming,
the alias is re-read: if it no longer points where the decision saw it (another promotion, a
rollback, or a person in the MLflow UI), the decision is stale and is refused too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from mlplatform import registry
from mlplatform.lake import PROMOTIONS_AREA

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlplatform.lake import Lake

log = logging.getLogger(__name__)


class PromotionConflict(RuntimeError):
    """The champion or the promotion log changed since the decision was taken."""


@dataclass(frozen=True)
class Snapshot:
    """What a decision was based on: the champion then, and the log head then."""
    champion: str | None
    log_head: int


@dataclass(frozen=True)
class PromotionEntry:
    seq: int
    model: str
    action: str              # promote | manual_promote | rollback
    from_version: str | None
    to_version: str
    actor: str               # e.g. "airflow:flight_delay__train/manual__2013-..." or "airflow-user:admin"
    reason: str
    at: str
    evidence: dict = field(default_factory=dict)


def _entry_path(model: str, seq: int) -> str:
    return f"{PROMOTIONS_AREA}/{model}/{seq:08d}.json"


def entries(lake: "Lake", model: str) -> list[dict]:
    """The whole log, oldest first."""
    names = [n for n in lake.list_dir(f"{PROMOTIONS_AREA}/{model}") if n.endswith(".json")]
    return [lake.read_json(f"{PROMOTIONS_AREA}/{model}/{n}") for n in names]


def log_head(lake: "Lake", model: str) -> int:
    names = [n for n in lake.list_dir(f"{PROMOTIONS_AREA}/{model}") if n.endswith(".json")]
    return int(names[-1].split(".")[0]) if names else 0


def snapshot(lake: "Lake", mlc: "MlflowClient", model: str) -> Snapshot:
    """Read the log head before the alias: a promotion in flight has claimed its entry before it moves the alias."""
    head = log_head(lake, model)
    champion = registry.version_by_alias(mlc, model, registry.CHAMPION)
    return Snapshot(champion=str(champion.version) if champion else None, log_head=head)


def move_champion(lake: "Lake", mlc: "MlflowClient", model: str, to_version: str, seen: Snapshot,
                  action: str, actor: str, reason: str, evidence: dict | None = None) -> PromotionEntry:
    """Compare-and-set: move ``champion`` to ``to_version`` only if nothing moved since ``seen``."""
    current = registry.version_by_alias(mlc, model, registry.CHAMPION)
    current_version = str(current.version) if current else None
    if current_version != seen.champion:
        raise PromotionConflict(f"{model}: champion is v{current_version}, not v{seen.champion} as when the "
                                f"decision to move it to v{to_version} was taken")
    entry = PromotionEntry(seq=seen.log_head + 1, model=model, action=action, from_version=current_version,
                           to_version=str(to_version), actor=actor, reason=reason,
                           at=datetime.now(timezone.utc).isoformat(), evidence=evidence or {})
    try:
        lake.create_exclusive(_entry_path(model, entry.seq), json.dumps(asdict(entry), indent=2, default=str).encode())
    except FileExistsError:
        raise PromotionConflict(f"{model}: promotion log entry {entry.seq} was claimed by another promotion "
                                f"since the decision to move champion to v{to_version}") from None
    registry.set_alias(mlc, model, registry.CHAMPION, str(to_version))
    log.info("%s: champion v%s -> v%s (%s by %s): %s", model, current_version, to_version, action, actor, reason)
    return entry


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
    current = registry.version_by_alias(mlc, model, registry.CHAMPION)
    if log_head(lake, model) == entry.seq and (current is None or str(current.version) != entry.to_version):
        registry.set_alias(mlc, model, registry.CHAMPION, entry.to_version)
    return entry


def previous_champion(lake: "Lake", model: str, current: str | None) -> str:
    """The version that was champion before ``current`` became champion, per the log."""
    for entry in reversed(entries(lake, model)):
        if entry["to_version"] == current and entry["from_version"]:
            return entry["from_version"]
    raise ValueError(f"{model}: the promotion log records no champion before v{current}; name a version explicitly")



# -- the jobs of the train DAG's ``promote`` task and of the rollback DAG --------------------------------
def promote(model: str, outcome: dict, force: bool, actor: str) -> dict:
    """Move ``champion`` to the challenger if the gate passed (or a person forced it), through the
    promotion log's compare-and-set. A refused or stale challenger leaves the champion untouched."""
    from mlplatform import alerts
    from mlplatform.config import model_config, settings
    from mlplatform.lake import default_lake

    cfg, lake = model_config(model), default_lake()
    gate, version = outcome["gate"], outcome["version"]
    if not (gate["promote"] or force):
        alerts.gate_alert(cfg.name, version, outcome, promoted=False, action="reject", actor=actor,
                          from_version=outcome["seen"]["champion"])
        return {"promoted": False, "version": version, "reason": gate["reason"]}
    action = "promote" if gate["promote"] else "manual_promote"
    why = gate["reason"] if gate["promote"] else f"forced by {actor} although the gate refused: {gate['reason']}"
    mlc = registry.client(settings().mlflow_tracking_uri)
    seen = Snapshot(**outcome["seen"])
    done = logged_move(lake, mlc, cfg.name, seen, version, outcome["run_id"])
    if done is not None:  # a re-run of this task: the move is in the log already
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


def rollback(model: str, target: str, actor: str, reason: str) -> dict:
    """Point ``champion`` back at ``target`` (a version number, or "previous" per the promotion log)."""
    from mlplatform import alerts
    from mlplatform.config import model_config, settings
    from mlplatform.lake import default_lake

    cfg, lake = model_config(model), default_lake()
    mlc = registry.client(settings().mlflow_tracking_uri)
    seen = snapshot(lake, mlc, cfg.name)
    version = previous_champion(lake, cfg.name, seen.champion) if target == "previous" else str(target)
    mlc.get_model_version(cfg.name, version)  # fails loudly on a version that does not exist
    if version == seen.champion:
        raise ValueError(f"{model}: v{version} is already the champion")
    entry = move_champion(lake, mlc, cfg.name, version, seen, "rollback", actor, reason)
    alerts.rollback_alert(cfg.name, entry.from_version, version, actor, reason)
    return asdict(entry)
