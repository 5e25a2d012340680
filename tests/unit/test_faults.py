"""Pause points hold a process at a named moment while MLOPS_PAUSE_AT names it, and only then."""

from __future__ import annotations

import threading

from mlplatform.faults import PAUSE_AT, pause_point


def test_an_unnamed_point_does_not_pause(monkeypatch):
    monkeypatch.setenv(PAUSE_AT, "other.point")
    pause_point("this.point")  # returns at once; the test would hang otherwise


def test_a_named_point_holds_until_released(monkeypatch, capfd):
    monkeypatch.setenv(PAUSE_AT, "a.point, this.point")
    passed = threading.Event()

    def reach():
        pause_point("this.point", poll_seconds=0.01)
        passed.set()

    worker = threading.Thread(target=reach)
    worker.start()
    announced = ""
    while "MLOPS_PAUSED_AT this.point" not in announced:
        worker.join(0.01)
        assert worker.is_alive()
        announced += capfd.readouterr().err
    assert not passed.is_set(), "held at the point"
    monkeypatch.setenv(PAUSE_AT, "a.point")
    worker.join()
    assert passed.is_set()


def test_the_flag_is_the_hold_one_holder_at_a_time_released_by_deleting_it(monkeypatch, tmp_path):
    import os

    from mlplatform.faults import PAUSE_FLAG

    flag = tmp_path / "held"
    monkeypatch.setenv(PAUSE_AT, "this.point")
    monkeypatch.setenv(PAUSE_FLAG, str(flag))
    passed = threading.Event()

    def reach():
        pause_point("this.point", poll_seconds=0.01)
        passed.set()

    holder = threading.Thread(target=reach)
    holder.start()
    while not flag.exists():
        holder.join(0.01)
        assert holder.is_alive()
    assert int(flag.read_text()) == os.getpid() and not passed.is_set()
    pause_point("this.point")  # a second process (here: thread) finds the flag there and goes on
    assert not passed.is_set(), "the first one still holds"
    flag.unlink()
    holder.join()
    assert passed.is_set() and sorted(tmp_path.iterdir()) == []
