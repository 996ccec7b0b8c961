"""A default worker serving every tier holds few PostgreSQL connections: its pool is sized to need
(``workers.tasks.default_pool_size``), not to its threads. Counted by PostgreSQL itself while 72
threads run slow calls, and after they finish."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from testbed.processes import wait_for
from testbed.services import PG_ADMIN_URL
from tests.factories import chat_request, embedding_request
from tests.support.stack import Stack, running_stack
from workers.tasks import default_pool_size

pytestmark = pytest.mark.e2e

APP = "batchery-worker-under-test"
DEFAULT_THREADS = 16 + 32 + 16 + 8  # the default tiers' concurrency, summed: what `batchery worker` runs


@pytest.fixture
def stack(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path, postgres_url, redis_url, workers=0) as running:
        separator = "&" if "?" in postgres_url else "?"
        running.env = {**running.env, "DATABASE_URL": f"{postgres_url}{separator}application_name={APP}"}
        running.start_worker("worker0")  # default concurrency, every tier, dispatching by itself
        yield running


def _worker_connections(database: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = %s and application_name = %s",
            (database, APP),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_default_worker_keeps_its_connections_to_what_it_needs(stack: Stack, postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1].split("?")[0]
    slow = "sim:latency=1500"
    bodies = (
        [{"kind": "chat", "request": chat_request(model="gpt-4o-mini", user=slow)} for _ in range(60)]
        + [{"kind": "chat", "request": chat_request(model="gpt-4o", user=slow)} for _ in range(30)]
        + [{"kind": "embedding", "request": {**embedding_request(), "user": slow}} for _ in range(30)]
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _worker_connections(database))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    with stack.api() as api:
        wait_for(lambda: _worker_connections(database) > 0, 30, what="the worker's first connection")
        sampler.start()
        ids = [api.post("/v1/jobs", json=body).json()["id"] for body in bodies]
        jobs = stack.wait_jobs(api, ids, timeout=120)
    stop.set()
    sampler.join(timeout=5)
    assert all(job["status"] == "succeeded" for job in jobs)
    assert max(job["attempts"] for job in jobs) == 1
    pool = default_pool_size(DEFAULT_THREADS)
    assert pool == 9
    assert 0 < peak[0] <= 2 * pool  # the pool and its burst overflow, never one per thread
    # the burst's extra connections close when returned: what stays open is at most the pool
    wait_for(lambda: _worker_connections(database) <= pool, 30, what="idle connections back within the pool")
