"""A default worker's PostgreSQL pool is sized to need, not to its threads: when every thread reaches
for the database at once the pool opens at most twice ``default_pool_size`` connections, and once
they are returned PostgreSQL sees no more than ``default_pool_size`` of them left open (idle).

The end-to-end test (``tests/e2e/test_worker_db_connections.py``) counts what a real worker holds
under load; this one forces the burst, so a pool sized to the threads (which keeps every connection it
ever opened) fails it."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from celery import Celery
from sqlalchemy import text

from config.settings import load_settings
from testbed.services import PG_ADMIN_URL
from workers.tasks import WorkerState, default_pool_size

pytestmark = pytest.mark.integration

DEFAULT_THREADS = 16 + 32 + 16 + 8  # the default tiers' concurrency, summed: what `batchery worker` runs


def _connections(database: str, app: str) -> dict[str, int]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "select state, count(*) from pg_stat_activity where datname = %s and application_name = %s "
            "group by state",
            (database, app),
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


def test_a_default_worker_keeps_at_most_its_pool_idle_after_every_thread_used_the_database(
    database_url: str, redis_url: str
) -> None:
    app = f"pool-{uuid.uuid4().hex[:8]}"
    postgres = database_url.startswith("postgresql")
    database = database_url.rsplit("/", 1)[1].split("?")[0]
    separator = "&" if "?" in database_url else "?"
    url = f"{database_url}{separator}application_name={app}" if postgres else database_url
    settings = load_settings(database_url=url, redis_url=redis_url)
    state = WorkerState(settings, Celery("pool-test", set_as_current=False), DEFAULT_THREADS)
    sessions = state.runner().sessions
    engine = sessions.kw["bind"]

    def open_connections() -> int:
        held = engine.pool.checkedin() + engine.pool.checkedout()  # type: ignore[attr-defined]
        if postgres:  # counted by PostgreSQL itself as well
            assert sum(_connections(database, app).values()) == held
        return int(held)

    pool = default_pool_size(DEFAULT_THREADS)
    assert pool == 9
    burst = 2 * pool  # the pool and its overflow: every connection the process may hold at once
    holding = threading.Barrier(burst + 1)
    release = threading.Event()
    errors: list[BaseException] = []

    def use() -> None:
        try:
            with sessions() as session:
                session.execute(text("select 1"))
                holding.wait(30)
                release.wait(30)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(burst)]
    try:
        for thread in threads:
            thread.start()
        holding.wait(30)
        assert open_connections() == burst
        release.set()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        assert open_connections() <= pool  # the burst's extra connections closed; the pool stays
    finally:
        release.set()
        engine.dispose()
