"""
### Model files that failed validation

Builds no Airflow DAG. The DAG factories (ingest, train, score, monitor, rollback) build DAGs for
the valid model files only; a broken file must still be seen, and an import error belongs to a DAG
file, so this file raises when any model file is invalid. Airflow then shows one import error,
here, naming each broken file and key path, while the other models' DAGs load as usual.
Check files before committing with `make check-config`.
"""

from __future__ import annotations

from mlplatform.config import raise_for_config_errors

raise_for_config_errors()
