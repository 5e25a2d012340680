"""Batch MLOps platform: the logic behind the Airflow DAGs, importable without Airflow running."""
