"""The replay driver's arithmetic and text, from records shaped as Airflow's REST API returns them: which days have
finished their ingest -> score -> monitor chain, the rate and ETA, and the summary's lines. No servers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mlplatform.devstack.replay import (FAILED, SUCCESS, ModelReplay, Progress, ReplayRun, Window, chains_line,
                                        champion_moves_line, day_outcomes, duration_text, header_line, parse_args,
                                        progress_line, retraining_line, throughput_lines)


def ingest_run(ds: str, state: str) -> dict:
    """A record of GET /api/v2/dags/{dag_id}/dagRuns for a backfilled ingest run."""
    return {"dag_run_id": f"backfill__{ds}T00:00:00+00:00", "dag_id": "flight_delay__ingest", "state": state,
            "logical_date": f"{ds}T00:00:00Z", "run_type": "backfill", "start_date": "2026-11-30T10:00:00Z"}


def created_run(run_id: str, dag_id: str, state: str) -> dict:
    """An entry of an asset event's ``created_dagruns``."""
    return {"run_id": run_id, "dag_id": dag_id, "logical_date": None, "start_date": "2026-11-30T10:01:00Z",
            "end_date": None, "state": state, "data_interval_start": None, "data_interval_end": None,
            "partition_key": None, "triggering": True}


def asset_event(source_dag: str, source_run: str, days: list[str], created: list[dict], **extra) -> dict:
    """A record of GET /api/v2/assets/events."""
    name = "flight_delay.features" if source_dag.endswith("__ingest") else "flight_delay.predictions"
    return {"id": hash((source_run, tuple(days))) % 10_000, "asset_id": 1, "uri": name, "name": name, "group": "asset",
            "extra": {"days": days, **extra}, "source_task_id": "task", "source_dag_id": source_dag,
            "source_run_id": source_run, "source_map_index": -1, "created_dagruns": created,
            "timestamp": "2026-11-30T10:00:30Z", "partition_key": None}


def features(ds: str, *score_runs: dict) -> dict:
    return asset_event("flight_delay__ingest", f"backfill__{ds}T00:00:00+00:00", [ds], list(score_runs))


def predictions(score_run_id: str, days: list[str], *monitor_runs: dict) -> dict:
    return asset_event("flight_delay__score", score_run_id, days, list(monitor_runs))


def score(run_id: str, state: str) -> dict:
    return created_run(run_id, "flight_delay__score", state)


def monitor(run_id: str, state: str) -> dict:
    return created_run(run_id, "flight_delay__monitor", state)


def test_a_day_is_done_only_when_the_last_run_of_its_chain_has_finished():
    days = [f"2013-02-0{i}" for i in range(1, 10)]
    # No ingest run for 09 yet: the backfill has not created it.
    ingest_runs = [ingest_run(ds, "success") for ds in days[:3] + days[5:8]]
    ingest_runs += [ingest_run(days[3], "running"), ingest_run(days[4], "failed")]
    # 01 and 02: one score run scored both, its monitor run finished; 03: in a second monitor run, still running.
    batched = score("asset_triggered__a", "success")
    feature_events = [features(days[0], batched), features(days[1], batched),
                      features(days[2], score("asset_triggered__b", "success"))]
    prediction_events = [predictions("asset_triggered__a", days[:2], monitor("asset_triggered__m1", "success")),
                         predictions("asset_triggered__b", [days[2]], monitor("asset_triggered__m2", "running"))]
    # 04: ingest running. 05: ingest failed (no event). 06: its features event has not created a score run yet.
    feature_events.append(features(days[5]))
    # 07: its score run skipped (no champion): it published no predictions, so the chain ends there.
    feature_events.append(features(days[6], score("asset_triggered__c", "success")))
    # 08: the monitor run failed.
    feature_events.append(features(days[7], score("asset_triggered__d", "success")))
    prediction_events.append(predictions("asset_triggered__d", [days[7]], monitor("asset_triggered__m3", "failed")))

    outcomes = day_outcomes(days, ingest_runs, feature_events, prediction_events)

    assert outcomes == {"2013-02-01": SUCCESS, "2013-02-02": SUCCESS, "2013-02-03": "monitor", "2013-02-04": "ingest",
                        "2013-02-05": FAILED, "2013-02-06": "score", "2013-02-07": SUCCESS, "2013-02-08": FAILED,
                        "2013-02-09": "ingest"}
    progress = Progress.of(outcomes, 60.0)
    assert progress == Progress(done=5, total=9, failed=2, elapsed_s=60.0,
                                waiting={"ingest": 2, "score": 1, "monitor": 1})
    assert progress_line("flight_delay replay", progress) == ("flight_delay replay: 5/9 days done (2 failed), "
                                                              "5.0 days/min, ETA 48s; "
                                                              "waiting for ingest 2, score 1, monitor 1")


def test_a_score_run_that_is_still_running_keeps_its_days_waiting_whatever_its_events_say():
    ds = "2013-02-01"
    running = score("asset_triggered__a", "running")
    waiting = day_outcomes([ds], [ingest_run(ds, "success")], [features(ds, running)], [])
    assert waiting == {ds: "score"}
    # An event of another day, or of another run, does not finish this day's chain.
    finished = score("asset_triggered__a", "success")
    other = [predictions("asset_triggered__a", ["2013-02-02"], monitor("m", "success")),
             predictions("asset_triggered__z", [ds], monitor("m2", "success"))]
    assert day_outcomes([ds], [ingest_run(ds, "success")], [features(ds, finished)], other) == {ds: SUCCESS}


def test_rate_and_eta_come_from_the_days_done_so_far():
    progress = Progress(done=3, total=7, failed=0, elapsed_s=120.0)
    assert progress.days_per_minute == pytest.approx(1.5)
    assert progress.eta_s == pytest.approx(160.0)
    assert progress_line("flight_delay replay", progress) == \
        "flight_delay replay: 3/7 days done, 1.5 days/min, ETA 2m40s"

    assert progress_line("x", Progress(done=0, total=7, failed=0, elapsed_s=50.0)) == \
        "x: 0/7 days done, no day done yet, ETA unknown"
    assert Progress(done=0, total=7, failed=0, elapsed_s=50.0).eta_s is None
    assert progress_line("x", Progress(done=28, total=28, failed=1, elapsed_s=600.0)) == \
        "x: 28/28 days done (1 failed), 2.8 days/min, done"


def test_durations_read_naturally():
    assert [duration_text(s) for s in (0, 42.4, 60, 185, 3599, 3600, 3725, 90000)] == \
        ["0s", "42s", "1m00s", "3m05s", "59m59s", "1h00m", "1h02m", "25h00m"]


def test_the_window_is_checked_and_split_into_history_and_replay():
    window = Window("2013-01-01", "2013-02-01", "2013-02-07")
    assert window.history_end == "2013-01-31"
    assert (len(window.history_days()), window.replay_days()[0], len(window.replay_days())) == (31, "2013-02-01", 7)

    with pytest.raises(ValueError, match="replay end: not a day written YYYY-MM-DD: '2013-02-30'"):
        Window("2013-01-01", "2013-02-01", "2013-02-30")
    with pytest.raises(ValueError, match=r"the history \(2013-02-01\) must start before the replay"):
        Window("2013-02-01", "2013-02-01", "2013-02-07")
    with pytest.raises(ValueError, match=r"the replay ends \(2013-01-31\) before it starts \(2013-02-01\)"):
        Window("2013-01-01", "2013-02-01", "2013-01-31")


def test_bad_arguments_fail_with_a_message_naming_the_fix(capsys):
    assert parse_args(["--from", "2013-03-01", "--to", "2013-03-31"], ["flight_delay"]) == (
        Window("2013-01-01", "2013-03-01", "2013-03-31"), ["flight_delay"])
    for argv, message in (([], "set the window: FROM=YYYY-MM-DD TO=YYYY-MM-DD"),
                          (["--from", "2013-02-01", "--to", "2013-02-07", "--model", "nope"],
                           "unknown model nope; configured: flight_delay"),
                          (["--from", "2013-02-01", "--to", "20130207"], "replay end: not a day")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv, ["flight_delay"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_the_summary_names_the_replayed_days_whose_chain_failed_or_never_finished():
    outcomes = {"2013-02-01": SUCCESS, "2013-02-02": FAILED, "2013-02-03": SUCCESS, "2013-02-04": "monitor",
                "2013-02-05": "score"}
    assert chains_line(outcomes) == ("  replayed days: 3 of 5 done, 1 of them failed (2013-02-02); not done: "
                                     "2013-02-04 (waiting for monitor), 2013-02-05 (waiting for score)")
    assert chains_line({ds: SUCCESS for ds in ("2013-02-01", "2013-02-02")}) == "  replayed days: 2 of 2 done"
    many = {f"2013-03-{i:02d}": "monitor" for i in range(1, 13)}
    assert chains_line(many, listed=2) == ("  replayed days: 0 of 12 done; not done: 2013-03-01 (waiting for monitor), "
                                           "2013-03-02 (waiting for monitor) and 10 more")


def train_run(run_id: str, run_type: str, state: str) -> dict:
    return {"dag_run_id": run_id, "dag_id": "flight_delay__train", "run_type": run_type, "state": state}


def task_instance(run_id: str, state: str) -> dict:
    return {"dag_run_id": run_id, "task_id": "train_challenger", "dag_id": "flight_delay__train", "state": state}


def retrain_request(reason: str) -> dict:
    return {"source_dag_id": "flight_delay__monitor", "extra": {"cutoff_ds": "2013-02-20", "reason": reason},
            "created_dagruns": []}


def test_retrainings_are_the_runs_the_monitor_asked_for_with_the_reasons_it_gave():
    runs = [train_run("initial__2013-01-31", "manual", "success"),
            train_run("asset_triggered__1", "asset_triggered", "success"),
            train_run("asset_triggered__2", "asset_triggered", "failed")]
    tis = [task_instance(r["dag_run_id"], r["state"]) for r in runs]
    requests = [retrain_request("drift"), retrain_request("performance"), retrain_request("drift")]

    assert retraining_line(runs, tis, requests) == \
        "  retrainings: 2 runs (1 success, 1 failed) on 3 retrain requests (drift 2, performance 1)"
    assert retraining_line(runs[:1], tis[:1], []) == "  retrainings: none (no retrain request)"


def test_champion_moves_are_listed_from_the_promotion_log():
    entries = [{"seq": 1, "action": "promote", "from_version": None, "to_version": "1"},
               {"seq": 2, "action": "promote", "from_version": "1", "to_version": "3"},
               {"seq": 3, "action": "rollback", "from_version": "3", "to_version": "1"}]
    assert champion_moves_line(entries) == \
        "  champion moves: 3 (promote none -> 1, promote 1 -> 3, rollback 3 -> 1)"
    assert champion_moves_line([]) == "  champion moves: none"


def test_throughput_counts_the_model_days_this_replay_ran_over_the_replay_phase_and_over_the_whole_run():
    window = Window("2013-01-01", "2013-02-01", "2013-02-07")
    # The second model's history was ingested by an earlier replay: only its 7 replay days ran.
    started = datetime(2026, 11, 30, tzinfo=timezone.utc)
    run = ReplayRun(window=window, models=["flight_delay", "other"], started_at=started,
                    replays={"flight_delay": ModelReplay(window.history_days(), window.replay_days(),
                                                         history_s=100, training_s=60, replay_s=120),
                             "other": ModelReplay([], window.replay_days(), history_s=10, training_s=70, replay_s=240)},
                    wall_s=600)

    assert header_line(run) == ("== replay 2013-02-01 .. 2013-02-07 after history 2013-01-01 .. 2013-01-31, "
                                "models flight_delay, other ==")
    # 14 replayed model-days in 360 s of replay: 140 per hour; 31 + 14 model-days in 600 s of wall time: 270 per hour.
    assert throughput_lines(run) == [
        "  wall time 10m00s: history 1m50s, first training 2m10s, replay 6m00s",
        "  14 model-days replayed: 140 model-days per hour",
        "  45 model-days run in all (history included): 270 per hour of wall time",
    ]

    rerun = ReplayRun(window=window, models=["flight_delay"], started_at=started,
                      replays={"flight_delay": ModelReplay([], [], history_s=7, training_s=7, replay_s=7)}, wall_s=21)
    assert throughput_lines(rerun) == [
        "  wall time 21s: history 7s, first training 7s, replay 7s",
        "  no day replayed: every day of the window already had a successful ingest run",
    ]
