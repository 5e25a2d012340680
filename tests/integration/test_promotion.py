"""The champion alias moves only through the promotion log's compare-and-set, against a real MLflow
server and the lake: two racing promotions cannot both win, and rollbacks are logged too."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.integration
MODEL = "race_model"


@pytest.fixture(scope="module")
def registry_with_versions(local_servers):
    """Three registered versions of a tiny model (the promotion code is agnostic of the model)."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlplatform import registry
    from mlplatform.config import settings

    mlc = registry.client(settings().mlflow_tracking_uri)
    mlflow.set_experiment(MODEL)
    x = np.arange(20, dtype=float).reshape(-1, 1)
    for c in (0.1, 1.0, 10.0):
        with mlflow.start_run():
            mlflow.sklearn.log_model(LogisticRegression(C=c).fit(x, x[:, 0] > 9), name="model",
                                     registered_model_name=MODEL, serialization_format="skops")
    return mlc


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
