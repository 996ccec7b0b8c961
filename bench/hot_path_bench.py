"""CPU per claim on PostgreSQL: the worker's hot path (``domain.storage.pg_hot_path``, long-lived autocommit
connections keeping their cursors) against the same compiled statement run on a connection checked out
of SQLAlchemy's pool for each statement (autocommit set and reset, a new cursor), the way the hot path
ran before. One thread, a fresh database on the local PostgreSQL, alternated rounds.

    python -m bench.hot_path_bench [--jobs 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Engine, text

from bench.harness import save
from domain.jobs import repository
from domain.storage.pg_hot_path import CompiledStatement, HotPath
from domain.storage.sessions import make_engine
from tests.support.job_rows import bulk_insert, migrated_database


def _checkout_per_statement(engine: Engine, statement: CompiledStatement) -> Callable[[str], Any]:
    def claim(job_id: str) -> Any:
        values = repository.claim_values(job_id, owner="bench", lease_seconds=60, token=f"bench:{job_id}")
        raw = engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            with connection.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(statement.sql, statement.parameters(values), prepare=True)
                row = cursor.fetchone()
            connection.autocommit = False
            return row
        finally:
            raw.close()

    return claim


def _cpu_per_call(claim: Callable[[str], Any], job_ids: list[str]) -> float:
    started = time.process_time()
    for job_id in job_ids:
        if claim(job_id) is None:
            raise RuntimeError(f"job {job_id} was not claimed")
    return (time.process_time() - started) / len(job_ids) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=3000, help="claims per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with migrated_database() as url:
        bulk_insert(url, 2 * args.jobs * args.rounds, tenant="bench")
        engine = make_engine(url, pool_size=2, pre_ping=False)
        hot = HotPath(engine, size=1)
        try:
            with engine.connect() as connection:
                job_ids = [row[0] for row in connection.execute(text("SELECT id FROM jobs ORDER BY id"))]
            pooled = _checkout_per_statement(engine, hot._claim)

            def kept(job_id: str) -> Any:
                return hot.claim(job_id, owner="bench", lease_seconds=60, token=f"bench:{job_id}")

            baseline, measured = [], []
            for index in range(args.rounds):
                lot = job_ids[2 * index * args.jobs : 2 * (index + 1) * args.jobs]
                baseline.append(_cpu_per_call(pooled, lot[: args.jobs]))
                measured.append(_cpu_per_call(kept, lot[args.jobs :]))
        finally:
            hot.close()
            engine.dispose()
    record: dict[str, Any] = {
        "claim_cpu_us_hot_path": round(statistics.median(measured), 1),
        "claim_cpu_us_pool_checkout": round(statistics.median(baseline), 1),
        "ratio": round(statistics.median(measured) / statistics.median(baseline), 2),
        "rounds": {
            "hot_path": [round(v, 1) for v in measured],
            "pool_checkout": [round(v, 1) for v in baseline],
        },
    }
    for key, value in record.items():
        print(f"{key}: {value}")
    print("saved", save("hot_path", record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
