"""Airflow UI additions for the platform: a link to the MLflow UI in the navigation bar.

The model-reports page (reports, trends, promotion log) will live here too.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin


class MLPlatformPlugin(AirflowPlugin):
    name = "mlplatform"
    external_views = [
        {
            "name": "MLflow",
            "href": os.environ.get("MLFLOW_UI_URL", os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")),
            "destination": "nav",
            "category": "browse",
        }
    ]
