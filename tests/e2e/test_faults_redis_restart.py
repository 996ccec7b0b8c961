"""Redis forgets everything: with 1,000 jobs queued, the test's own redis-server restarts empty and is
flushed. A job submitted while it is down is still accepted (durable, sent later). Every job completes,
and each is called upstream exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from testbed.processes import wait_for
from testbed.redis_server import RedisServer
from tests.factories import chat_request
from tests.support.job_rows import (
    attempt_outcomes,
    bulk_insert,
    migrated_database,
    query,
    wait_until_finished,
)
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TOTAL = 1000
THROUGH_API = 100


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("flush")
    tiers = write_tiers(tmp / "tiers.toml", {"standard": {"concurrency": 16}}, {"gpt-4o-mini": "standard"})
    env = {"BATCHERY_TIERS_FILE": str(tiers)}
    with migrated_database() as database:
        with running_stack(
            tmp, database, redis_server.url, workers=0, dispatcher=True, extra_env=env
        ) as running:
            running.env["DATABASE_URL"] = database
            yield running


def test_a_restarted_and_flushed_redis_loses_no_job(stack: Stack, redis_server: RedisServer) -> None:
    database = stack.env["DATABASE_URL"]
    broker = redis_server.client()
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_stats/reset")

        def submit(index: int) -> int:
            body = {"kind": "chat", "request": chat_request(prompt=f"job {index}")}
            return api.post("/v1/jobs", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(submit, range(THROUGH_API))) == {202}
        bulk_insert(database, TOTAL - THROUGH_API, tenant="default")
        # no worker runs yet: the queue holds the window (2 x concurrency 16), the database the rest
        wait_for(lambda: broker.llen("tier.standard") >= 32, timeout=30, what="a full window in Redis")

        redis_server.stop()
        accepted = api.post("/v1/jobs", json={"kind": "chat", "request": chat_request(prompt="while down")})
        assert accepted.status_code == 202, accepted.text  # durable now, sent once Redis is back
        late = accepted.json()["id"]
        assert query(database, "SELECT status, dispatched_at FROM jobs WHERE id = :id", id=late) == [
            ("queued", None)
        ]
        redis_server.start()
        redis_server.client().flushall()
        assert redis_server.client().llen("tier.standard") == 0

        stack.start_worker("worker0", "--concurrency", "16")
        stack.start_worker("worker1", "--concurrency", "16")
        counts = wait_until_finished(database, TOTAL + 1, timeout=100)
        stats = sim.get("/_stats").json()
    assert counts == {"succeeded": TOTAL + 1}, counts
    assert stats["requests_total"] == TOTAL + 1  # each job called once, re-sent ids notwithstanding
    outcomes = attempt_outcomes(database)
    assert len(outcomes) == TOTAL + 1 and all(log == ["succeeded"] for log in outcomes.values())
    # once at start-up (a new Redis), once after the flush
    assert stack.processes["dispatcher"].log_tail(2000).count("re-sending every queued id") >= 2
