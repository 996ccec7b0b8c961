"""Fair share within a tier: one tenant has 100,000 queued jobs (inserted in bulk), another submits ten,
and the ten finish while the big backlog is still draining; an interactive job sent with a higher
priority overtakes the big tenant's backlog and its own earlier jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from domain.jobs.dispatch_repository import queued_in_window
from domain.jobs.submission import WindowRooms
from domain.storage.sessions import make_engine, make_session_factory
from domain.tenancy.fair_share import window_size
from testbed.processes import wait_for
from testbed.services import private_redis_db
from tests.factories import chat_request
from tests.support.job_rows import bulk_insert, migrated_database, query, status_counts
from tests.support.keys import create_key
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]
log = logging.getLogger(__name__)

BACKLOG = 100_000
WINDOW_FACTOR: float = Settings.model_fields["dispatch_window_factor"].default


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with migrated_database() as url:
        seconds = bulk_insert(url, BACKLOG, tenant="big")
        log.warning("inserted %d queued jobs in %.2fs", BACKLOG, seconds)
        yield url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("fair")
    tiers = write_tiers(tmp / "tiers.toml", {"standard": {"concurrency": 4}}, {"gpt-4o-mini": "standard"})
    env = {"BATCHERY_TIERS_FILE": str(tiers), "BATCHERY_MAX_QUEUED_JOBS_PER_TENANT": "1000000"}
    sim = ("--no-limits", "--latency", "fixed:100")
    with private_redis_db() as redis_url:
        with running_stack(
            tmp, database, redis_url, sim_args=sim, worker_args=("--concurrency", "4"), extra_env=env
        ) as running:
            yield running


def _submit(api: httpx.Client, count: int, priority: int = 0) -> list[str]:
    ids = []
    for index in range(count):
        body = {"kind": "chat", "request": chat_request(prompt=f"job {index}"), "priority": priority}
        response = api.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def test_a_small_tenant_is_served_while_a_big_backlog_drains(stack: Stack, database: str) -> None:
    wait_for(lambda: status_counts(database, "big").get("succeeded", 0) >= 20, timeout=30, what="draining")
    with stack.api(create_key(database, tenant="small")) as small:
        ids = _submit(small, 10)
        jobs = stack.wait_jobs(small, ids, timeout=60)
    assert [job["status"] for job in jobs] == ["succeeded"] * 10
    assert status_counts(database, "big")["queued"] > BACKLOG - 2000  # still draining


def _window_is_full(database: str) -> bool:
    engine = make_engine(database)
    try:
        with make_session_factory(engine)() as session:
            return queued_in_window(session, "standard") >= window_size(4, WINDOW_FACTOR)
    finally:
        engine.dispose()


def test_a_higher_priority_job_overtakes_the_backlog(stack: Stack, database: str) -> None:
    stack.processes["worker0"].stop()
    # The worker may stop before its last finished jobs were topped up: a window with room would let the
    # API send the earlier jobs straight to the queue, ahead of anything submitted later. One dedicated
    # dispatcher fills the window, then stops; nothing is dispatched while the jobs are submitted.
    dispatcher = stack.start_dispatcher()
    wait_for(lambda: _window_is_full(database), timeout=30, what="a full window")
    dispatcher.stop()
    time.sleep(WindowRooms().ttl * 2)  # the API re-reads the window instead of counting down an old read
    with stack.api(create_key(database, tenant="big")) as big:
        earlier = _submit(big, 30)
        urgent = _submit(big, 1, priority=10)[0]
        stack.start_worker("worker-next", "--concurrency", "1")
        (job,) = stack.wait_jobs(big, [urgent], timeout=60)
    assert job["status"] == "succeeded"
    urgent_started = query(database, "SELECT started_at FROM jobs WHERE id = :id", id=urgent)[0][0]
    started = dict(query(database, "SELECT id, started_at FROM jobs WHERE id = ANY(:ids)", ids=earlier))
    assert all(at is None or at > urgent_started for at in started.values())
    assert status_counts(database, "big")["queued"] > BACKLOG - 2000
