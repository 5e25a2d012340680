"""Airflow's local-settings hook: every Airflow process imports this module (it is on PYTHONPATH with the
platform's package). The platform uses it for one thing, the warm task start (see mlplatform.warm_start)."""

from mlplatform.warm_start import install

install()
