"""A monitored day's record is merged from two files with one writer each: the day's monitor writes
summary.json, the evaluation of the day (once its labels are in) writes performance.json."""

from __future__ import annotations

from mlplatform.monitoring import merged_day

SUMMARY = {"model": "m", "ds": "2013-03-01", "model_version": "1", "rows": 900, "drift_share": 0.2,
           "observation": {"ds": "2013-03-01", "rows": 900, "columns": [], "realized_auc": None, "labelled_rows": 0},
           "decision": {"action": "none"}}
PERFORMANCE = {"model": "m", "ds": "2013-03-01", "model_version": "1", "labels_known_at": "2013-03-03",
               "metrics": {"roc_auc": 0.71, "rows": 850, "late_rate": 0.2}}


def test_summary_and_performance_merge_into_one_record():
    record = merged_day(SUMMARY, PERFORMANCE)
    assert record["drift_share"] == 0.2 and record["decision"] == {"action": "none"}
    assert record["performance"] == {"roc_auc": 0.71, "rows": 850, "late_rate": 0.2, "labels_known_at": "2013-03-03"}
    assert record["observation"] == {**SUMMARY["observation"], "realized_auc": 0.71, "labelled_rows": 850}
    assert SUMMARY["observation"]["realized_auc"] is None, "the summary read is not changed"


def test_a_day_evaluated_before_its_monitor_ran_is_a_record_with_performance_only():
    record = merged_day(None, PERFORMANCE)
    assert (record["ds"], record["model_version"], record["performance"]["roc_auc"]) == ("2013-03-01", "1", 0.71)
    assert record["observation"] == {"ds": "2013-03-01", "rows": 0, "columns": [], "realized_auc": 0.71,
                                     "labelled_rows": 850}


def test_a_decision_sees_only_the_labels_known_at_its_day():
    """A re-run of an earlier day decides as it did the first time, though the labels came in since."""
    assert merged_day(SUMMARY, PERFORMANCE, as_of="2013-03-02") == SUMMARY
    assert merged_day(None, PERFORMANCE, as_of="2013-03-02") is None
    assert merged_day(SUMMARY, PERFORMANCE, as_of="2013-03-03")["observation"]["realized_auc"] == 0.71


def test_a_day_with_neither_file_has_no_record():
    assert merged_day(None, None) is None
