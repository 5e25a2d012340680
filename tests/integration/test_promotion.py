"""The champion alias moves only through the promotion log's compare-and-set, against a real MLflow
server and the lake: two racing promotions cannot both win, and rollbacks are logged too. A move made
outside the platform is logged by the first task that reads the alias, once; a re-run move finishes
its own logged entry instead of making another."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.integration
MODEL = "race_model"


def registered(name: str, count: int = 3):
    """``count`` registered versions of a tiny model (the promotion code is agnostic of the model)."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlplatform import registry
    from mlplatform.config import settings

    mlc = registry.client(settings().mlflow_tracking_uri)
    mlflow.set_experiment(name)
    x = np.arange(20, dtype=float).reshape(-1, 1)
    for c in (0.1, 1.0, 10.0)[:count]:
        with mlflow.start_run():
            mlflow.sklearn.log_model(LogisticRegression(C=c).fit(x, x[:, 0] > 9), name="model",
                                     registered_model_name=name, serialization_format="skops")
    return mlc


@pytest.fixture(scope="module")
def registry_with_versions(local_servers):
    return registered(MODEL)


def lake():
    from mlplatform.lake import default_lake as platform_lake

    return platform_lake()


def test_two_racing_promotions_cannot_both_win(registry_with_versions):
    from mlplatform import promotion, registry

    mlc = registry_with_versions
    first = promotion.move_champion(lake(), mlc, MODEL, "1", promotion.snapshot(lake(), mlc, MODEL),
                                    "promote", "test", "first champion")
    assert first.seq == 1 and first.from_version is None

    seen = promotion.snapshot(lake(), mlc, MODEL)  # both decisions were taken against v1 and log head 1
    start, results = threading.Barrier(2), {}

    def race(version: str) -> None:
        start.wait()
        try:
            results[version] = promotion.move_champion(lake(), mlc, MODEL, version, seen, "promote", f"racer-{version}",
                                                       "racing")
        except promotion.PromotionConflict as conflict:
            results[version] = conflict

    racers = [threading.Thread(target=race, args=(v,)) for v in ("2", "3")]
    for t in racers:
        t.start()
    for t in racers:
        t.join()

    winners = [v for v, r in results.items() if isinstance(r, promotion.PromotionEntry)]
    losers = [r for r in results.values() if isinstance(r, promotion.PromotionConflict)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version == winners[0]
    log = promotion.entries(lake(), MODEL)
    assert [(e["seq"], e["from_version"], e["to_version"]) for e in log] == [(1, None, "1"), (2, "1", winners[0])]


def test_a_stale_decision_is_refused_and_leaves_the_champion(registry_with_versions):
    from mlplatform import promotion, registry

    mlc = registry_with_versions
    stale = promotion.snapshot(lake(), mlc, MODEL)
    by_hand, target = [v for v in ("1", "2", "3") if v != stale.champion][:2]
    logged = len(promotion.entries(lake(), MODEL))
    registry.set_alias(mlc, MODEL, registry.CHAMPION, by_hand)  # someone moves it by hand in the MLflow UI
    with pytest.raises(promotion.PromotionConflict, match=f"champion is v{by_hand}"):
        promotion.move_champion(lake(), mlc, MODEL, target, stale, "promote", "test", "stale")
    assert registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version == by_hand
    assert len(promotion.entries(lake(), MODEL)) == logged, "a refused move writes nothing to the log"


def test_log_entries_are_never_overwritten(registry_with_versions):
    from mlplatform import promotion

    mlc = registry_with_versions
    if not promotion.entries(lake(), MODEL):  # run on its own: log one move first
        promotion.move_champion(lake(), mlc, MODEL, "1", promotion.snapshot(lake(), mlc, MODEL), "promote", "test", "first")
    head = promotion.entries(lake(), MODEL)[-1]
    path = f"promotions/{MODEL}/{head['seq']:08d}.json"
    with pytest.raises(FileExistsError):
        lake().create_exclusive(path, b"{}")
    assert lake().read_json(path) == head


def test_a_rerun_promotion_finds_its_logged_move_and_finishes_it(registry_with_versions):
    """The first try logged its entry and died before moving the alias: the re-run moves it, once."""
    from mlplatform import promotion, registry

    mlc = registry_with_versions
    seen = promotion.snapshot(lake(), mlc, MODEL)
    target = next(v for v in ("1", "2", "3") if v != seen.champion)
    entry = promotion.move_champion(lake(), mlc, MODEL, target, seen, "promote", "test", "first try",
                                    evidence={"run_id": "run-a"})
    if seen.champion:  # undo the alias move only: as if the task died between the log and the alias
        registry.set_alias(mlc, MODEL, registry.CHAMPION, seen.champion)

    assert promotion.logged_move(lake(), mlc, MODEL, seen, target, "run-b") is None, "another run's move"
    again = promotion.logged_move(lake(), mlc, MODEL, seen, target, "run-a")
    assert again == entry
    assert registry.version_by_alias(mlc, MODEL, registry.CHAMPION).version == target
    assert promotion.logged_move(lake(), mlc, MODEL, seen, target, "run-a") == entry
    assert promotion.log_head(lake(), MODEL) == entry.seq, "nothing logged twice"


def moves(model: str) -> list[tuple]:
    from mlplatform import promotion

    return [(e["seq"], e["action"], e["from_version"], e["to_version"]) for e in promotion.entries(lake(), model)]


def promote_to(mlc, model: str, version: str):
    from mlplatform import promotion

    return promotion.move_champion(lake(), mlc, model, version, promotion.snapshot(lake(), mlc, model), "promote",
                                   "test", f"promote v{version}", evidence={"run_id": f"run-v{version}"})


def test_a_hand_move_is_logged_once_however_many_tasks_see_it(local_servers):
    """The issue's case: champion set by hand to a version never promoted; then rollback to "previous"."""
    from mlplatform import promotion, registry

    model = "hand_moved_model"
    mlc = registered(model)
    promote_to(mlc, model, "1")
    registry.set_alias(mlc, model, registry.CHAMPION, "3")  # a person, in the MLflow UI
    start, seen = threading.Barrier(4), {}

    def read_champion(task: str) -> None:  # score, monitor, train and promote tasks at the same moment
        start.wait()
        seen[task] = promotion.reconcile(lake(), mlc, model, task)

    readers = [threading.Thread(target=read_champion, args=(f"reader-{i}",)) for i in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()

    assert set(seen.values()) == {promotion.Snapshot(champion="3", log_head=2)}
    assert moves(model) == [(1, "promote", None, "1"), (2, "external_move", "1", "3")]
    external = promotion.entries(lake(), model)[1]
    assert external["evidence"]["detected_by"] in seen and external["at"] == external["evidence"]["detected_at"]
    assert external["actor"] and "MLflow UI" in external["reason"] and external["evidence"]["detected_by"] in external["reason"]
    assert promotion.reconcile(lake(), mlc, model, "later reader") == promotion.Snapshot("3", 2), "logged once"

    entry, logged_now = promotion.roll_back(lake(), mlc, model, "previous", "test", "undo the hand move")
    assert logged_now and (entry.action, entry.from_version, entry.to_version) == ("rollback", "3", "1")
    assert registry.version_by_alias(mlc, model, registry.CHAMPION).version == "1"
    assert moves(model)[-1] == (3, "rollback", "3", "1")


def test_a_move_in_flight_is_not_a_hand_move_but_a_move_back_by_hand_is(local_servers, monkeypatch, capfd):
    """Between a move's log entry and its alias move, readers see the old alias: that is not an external
    move. Once the move is done, a person moving the alias back to the old version is one."""
    from mlplatform import promotion, registry
    from mlplatform.faults import PAUSE_AT

    model = "in_flight_model"
    mlc = registered(model, count=2)
    promote_to(mlc, model, "1")
    monkeypatch.setenv(PAUSE_AT, "promotion.before_alias")
    mover = threading.Thread(target=promote_to, args=(mlc, model, "2"))
    mover.start()
    announced = ""
    while "MLOPS_PAUSED_AT promotion.before_alias" not in announced:
        mover.join(0.05)
        assert mover.is_alive(), "the move ended without reaching its pause point"
        announced += capfd.readouterr().err

    assert promotion.reconcile(lake(), mlc, model, "reader") == promotion.Snapshot(champion="1", log_head=2)
    monkeypatch.delenv(PAUSE_AT)
    mover.join()
    assert promotion.reconcile(lake(), mlc, model, "reader") == promotion.Snapshot(champion="2", log_head=2)
    assert moves(model) == [(1, "promote", None, "1"), (2, "promote", "1", "2")]

    registry.set_alias(mlc, model, registry.CHAMPION, "1")  # by hand, back to the version the move started from
    assert promotion.reconcile(lake(), mlc, model, "reader") == promotion.Snapshot(champion="1", log_head=3)
    assert moves(model)[-1] == (3, "external_move", "2", "1")


def test_a_rerun_rollback_finds_its_own_entry_and_finishes_it(local_servers):
    """The first try is killed between its log entry and the alias move; the retry (same Airflow run)
    moves the alias to that entry's version, once, instead of rolling back a second step."""
    from mlplatform import promotion, registry
    from tests.integration.pausing import kill_hard, start_paused

    model = "rerun_rollback_model"
    mlc = registered(model)
    for version in ("1", "2", "3"):
        promote_to(mlc, model, version)
    run = "rerun_rollback_model__rollback/manual__2013-03-01T00:00:00+00:00"
    first_try = start_paused(
        "from mlplatform import promotion, registry\n"
        "from mlplatform.config import settings\n"
        "from mlplatform.lake import default_lake\n"
        f"promotion.roll_back(default_lake(), registry.client(settings().mlflow_tracking_uri), {model!r}, "
        f"'previous', 'test', 'first try', airflow_run={run!r})\n", "promotion.before_alias")
    kill_hard(first_try)
    assert moves(model)[-1] == (4, "rollback", "3", "2")
    assert registry.version_by_alias(mlc, model, registry.CHAMPION).version == "3", "killed before the alias"
    assert promotion.reconcile(lake(), mlc, model, "reader").log_head == 4, "a move left half-done is no hand move"

    for _ in range(2):  # the retry, then a retry of the retry
        entry, logged_now = promotion.roll_back(lake(), mlc, model, "previous", "test", "retry", airflow_run=run)
        assert not logged_now and (entry.seq, entry.to_version) == (4, "2")
        assert registry.version_by_alias(mlc, model, registry.CHAMPION).version == "2"
    assert len(moves(model)) == 4, "nothing logged twice"

    _, logged_now = promotion.roll_back(lake(), mlc, model, "1", "test", "another run", airflow_run="other")
    assert logged_now and moves(model)[-1] == (5, "rollback", "2", "1")


def test_a_refused_rollback_is_a_move_refused(local_servers):
    from mlplatform import promotion

    model = "refused_rollback_model"
    mlc = registered(model, count=1)
    promote_to(mlc, model, "1")
    with pytest.raises(promotion.MoveRefused, match="no champion before v1"):
        promotion.roll_back(lake(), mlc, model, "previous", "test", "nothing before")
    with pytest.raises(promotion.MoveRefused, match="already the champion"):
        promotion.roll_back(lake(), mlc, model, "1", "test", "same")
    with pytest.raises(promotion.MoveRefused, match="no version 7"):
        promotion.roll_back(lake(), mlc, model, "7", "test", "missing")
    assert len(moves(model)) == 1
