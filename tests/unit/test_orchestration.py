"""Days taken from triggering asset events are checked before any job runs: they become lake paths."""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor, set_current_context

from mlplatform.orchestration import triggered_days
from tests.conftest import REPO


def asset_event(asset: str, extra: dict) -> AssetEventDagRunReferenceResult:
    return AssetEventDagRunReferenceResult(
        asset={"name": asset, "uri": asset, "extra": {}}, extra=extra, source_task_id="t",
        source_dag_id="flight_delay__ingest", source_run_id="r1", source_map_index=-1, source_aliases=[],
        timestamp=datetime(2013, 2, 6, tzinfo=timezone.utc))


@contextmanager
def running_with(*events, params: dict | None = None):
    context = {"triggering_asset_events": TriggeringAssetEventsAccessor.build(events), "params": params or {},
               "logical_date": None}
    with set_current_context(context):
        yield


def test_days_of_all_triggering_events_are_processed_in_order():
    with running_with(asset_event("flight_delay.features", {"days": ["2013-02-06"]}),
                      asset_event("flight_delay.features", {"days": ["2013-02-05", "2013-02-06"]})):
        assert triggered_days() == ["2013-02-05", "2013-02-06"]


@pytest.mark.parametrize("extra", [{"days": ["2013-02-05/../../../../outside/written"]},
                                   {"days": ["2013-02-05", "2013-02-30"]},
                                   {"days": [20130205]},
                                   {"days": "2013-02-05"}])  # a string would be taken letter by letter
def test_a_bad_day_in_an_event_fails_the_task_naming_the_event(extra):
    with running_with(asset_event("flight_delay.features", extra)):
        with pytest.raises(AirflowFailException, match=r"asset event of flight_delay\.features from "
                                                        r"flight_delay__ingest/r1: extra\['days'\]"):
            triggered_days()


def test_the_ds_param_is_checked_too():
    with running_with(params={"ds": "2013-02-05/.."}):
        with pytest.raises(AirflowFailException, match="the ds param: not a day written YYYY-MM-DD"):
            triggered_days()
    with running_with(params={"ds": "2013-02-05"}):
        assert triggered_days() == ["2013-02-05"]


@pytest.fixture(scope="module")
def train_dag_module():
    spec = importlib.util.spec_from_file_location("train_dag_under_test", REPO / "dags" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_train_request_takes_the_newest_checked_cutoff(train_dag_module):
    with running_with(asset_event("flight_delay.retrain_request", {"cutoff_ds": "2013-03-01", "reason": "age"}),
                      asset_event("flight_delay.retrain_request", {"cutoff_ds": "2013-03-08", "reason": "drift"})):
        assert train_dag_module._request() == ("2013-03-08", "drift")


@pytest.mark.parametrize("extra", [{"cutoff_ds": "2013-03-08/../../x"}, {"cutoff_ds": 5}, {"reason": "drift"}])
def test_a_bad_cutoff_in_a_retrain_request_fails_the_task(train_dag_module, extra):
    with running_with(asset_event("flight_delay.retrain_request", {"cutoff_ds": "2013-03-01"}),
                      asset_event("flight_delay.retrain_request", extra)):
        with pytest.raises(AirflowFailException, match=r"flight_delay\.retrain_request .*extra\['cutoff_ds'\]"):
            train_dag_module._request()
