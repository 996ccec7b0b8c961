"""With 100,000 jobs in one tenant's backlog, a dispatcher round on PostgreSQL reads a few rows through
indexes, never the backlog: every statement it runs is explained (ANALYZE) and its rows counted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from cli.migrations import upgrade
from config.settings import load_settings
from domain.jobs import repository
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from testbed.services import fresh_postgres_database
from tests.factories import new_job
from tests.support.tiers_file import write_tiers
from workers.dispatcher import Dispatcher

pytestmark = pytest.mark.integration

BACKLOG = 100_000
BULK_INSERT = text(
    """
    INSERT INTO jobs (id, tenant_id, kind, model, tier, status, priority, request, prompt_tokens,
        completion_tokens, total_tokens, cached_tokens, reasoning_tokens, images, estimated_tokens,
        limiter_wait_ms, attempts, created_at, updated_at)
    SELECT 'job_bulk' || lpad(g::text, 8, '0'), :tenant, 'chat', 'gpt-4o-mini', :tier, 'queued', 0,
        CAST(:request AS jsonb), 0, 0, 0, 0, 0, 0, 40, 0, 0, now(), now()
    FROM generate_series(1, :count) AS g
    """
)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with fresh_postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        request = json.dumps(new_job().request)
        with engine.begin() as connection:
            params = {"tenant": "big", "tier": "standard", "request": request, "count": BACKLOG}
            connection.execute(BULK_INSERT, params)
            connection.execute(text("ANALYZE jobs"))
        yield engine
        engine.dispose()


def _rows_read(plan: dict[str, Any]) -> tuple[int, list[str]]:
    """Rows the scans of ``jobs`` in a plan read (returned plus filtered out), and their node types."""
    rows, scans = 0, []
    if plan.get("Relation Name") == "jobs":
        scans.append(plan["Node Type"])
        loops = int(plan.get("Actual Loops", 1))
        rows += (int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))) * loops
    for child in plan.get("Plans", []):
        more, more_scans = _rows_read(child)
        rows += more
        scans += more_scans
    return rows, scans


def test_a_round_reads_a_few_rows_of_a_100k_backlog(engine: Engine, tmp_path: Path) -> None:
    url = engine.url.render_as_string(hide_password=False)
    tiers = write_tiers(
        tmp_path / "tiers.toml", {"standard": {"concurrency": 32}}, {"gpt-4o-mini": "standard"}
    )
    settings = load_settings(database_url=url, tiers_file=tiers)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:  # a small tenant's work arrives behind the backlog
        for _ in range(10):
            repository.create_job(session, new_job(tenant_id="small"))
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", capture)
    try:
        result = Dispatcher(
            settings, sessions, lambda ids, _q, _labels: sent.extend(ids) or []
        ).dispatch_tier("standard")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert result.dispatched == 64
    assert sum(1 for job_id in sent if not job_id.startswith("job_bulk")) == 10  # the small tenant's ten

    total = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in statements:
            if "FOR UPDATE" in statement or "pg_try_advisory" in statement:
                continue
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            plan = cursor.fetchone()[0][0]["Plan"]
            rows, scans = _rows_read(plan)
            assert "Seq Scan" not in scans, (statement, scans)
            total += rows
        raw.rollback()
    finally:
        raw.close()
    assert len(statements) >= 4
    assert total < 1000, total  # the round read about its 64 places' worth, not 100,000 rows
