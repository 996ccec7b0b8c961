"""Reading and writing job rows straight in the database, for fault tests that watch thousands of jobs
(polling the API for each would load the machine more than the test does)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cli.migrations import upgrade
from domain.storage.sessions import make_engine
from testbed.services import fresh_postgres_database
from tests.factories import chat_request

BULK_INSERT = text(
    """
    INSERT INTO jobs (id, tenant_id, kind, model, tier, status, priority, request, prompt_tokens,
        completion_tokens, total_tokens, cached_tokens, reasoning_tokens, images, estimated_tokens,
        limiter_wait_ms, attempts, batch_id, created_at, updated_at)
    SELECT :prefix || lpad(g::text, 8, '0'), :tenant, 'chat', :model, :tier, 'queued', :priority,
        CAST(:request AS jsonb), 0, 0, 0, 0, 0, 0, 40, 0, 0, :batch_id, now(), now()
    FROM generate_series(1, :count) AS g
    """
)


@contextmanager
def migrated_database() -> Iterator[str]:
    """A fresh PostgreSQL database of this test module's own, migrated; dropped afterwards."""
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


def bulk_insert(
    database_url: str,
    count: int,
    *,
    tenant: str,
    tier: str = "standard",
    model: str = "gpt-4o-mini",
    batch_id: str | None = None,
    priority: int = 0,
    prefix: str = "job_bulk",
) -> float:
    """Insert ``count`` queued, unsent chat jobs in one statement; returns the seconds it took."""
    engine = make_engine(database_url, pool_size=1)
    params = {
        "prefix": prefix,
        "tenant": tenant,
        "model": model,
        "tier": tier,
        "priority": priority,
        "request": json.dumps(chat_request(model)),
        "batch_id": batch_id,
        "count": count,
    }
    started = time.monotonic()
    try:
        with engine.begin() as connection:
            connection.execute(BULK_INSERT, params)
            connection.execute(text("ANALYZE jobs"))
    finally:
        engine.dispose()
    return time.monotonic() - started


def query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Run one statement; a refused connection (the server is shared and may be full) is tried again."""
    for attempt in range(20):
        engine = make_engine(database_url, pool_size=1)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql), params)]
        except OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.5)
        finally:
            engine.dispose()
    raise AssertionError("unreachable")


def status_counts(database_url: str, tenant: str | None = None) -> dict[str, int]:
    sql = "SELECT status, count(*) FROM jobs"
    sql += " WHERE tenant_id = :tenant GROUP BY status" if tenant else " GROUP BY status"
    return {status: int(count) for status, count in query(database_url, sql, tenant=tenant)}


def wait_until_finished(database_url: str, total: int, timeout: float) -> dict[str, int]:
    """Poll until ``total`` jobs are terminal; returns the counts by status."""
    deadline = time.monotonic() + timeout
    while True:
        counts = status_counts(database_url)
        finished = sum(counts.get(status, 0) for status in ("succeeded", "failed", "cancelled"))
        if finished >= total:
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {finished} of {total} jobs finished: {counts}")
        time.sleep(0.5)


def attempt_outcomes(database_url: str) -> dict[str, list[str]]:
    """Each job's logged attempt outcomes, in order."""
    rows = query(database_url, "SELECT job_id, outcome FROM job_attempts ORDER BY job_id, number")
    outcomes: dict[str, list[str]] = {}
    for job_id, outcome in rows:
        outcomes.setdefault(job_id, []).append(outcome)
    return outcomes
