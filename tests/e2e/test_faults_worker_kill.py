"""Killing and stopping workers.

SIGKILL: two workers of 100 threads each (tier concurrency 100, so the window takes all 200 ids at
once) and the simulator at 2 s latency, with the default lease settings (a 30 s lease renewed by each
worker's heartbeat every 5 s). 200 jobs go in with one ``POST /v1/jobs/bulk``; when the simulator
counts all 200 calls in flight, or at least 190 and no more coming, one worker is killed. Every job
still succeeds, the last one within 45 s of the kill (its lease passes at most 30 s after the dead
worker's last renewal, the dispatcher re-queues it within a round, and the call takes 2 s), its
result stored once, and the upstream saw at most 200 calls plus those in flight at the kill (more
precisely: plus one for each attempt logged as lost).

200 calls are in flight together only if they all start within about two seconds, the latency.
So the jobs go in with one request (single POSTs, eight at a time, reach about 45 jobs/s here, which
caps the calls in flight near 130), and only once both workers are ready and the first dispatcher
round has marked the broker: that round re-sends every id in the window of a new Redis, and 200
duplicate messages would crowd the workers while the calls start. On a machine too busy to start
them in time, the lot runs to its end and another is submitted, up to three lots.

SIGTERM lets calls in flight finish and gives the rest back.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis

from domain.storage.models import utcnow
from domain.storage.redis_keys import RedisKeys
from testbed.processes import Process, wait_for
from testbed.services import private_redis_db
from tests.factories import chat_request
from tests.support.job_rows import (
    attempt_outcomes,
    migrated_database,
    query,
    status_counts,
    wait_until_finished,
)
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

JOBS = 200
THREADS = 100  # per worker: two workers hold all 200 calls
IN_FLIGHT_AT_KILL = 190  # of 200: the last calls may start as the first ones end
LOTS = 3  # tries at getting one lot's calls in flight together on a busy machine
TIERS = {
    "standard": {"concurrency": THREADS, "timeout_seconds": 10, "max_attempts": 3, "backoff_base_seconds": 20}
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("kill")
    tiers = write_tiers(tmp / "tiers.toml", TIERS, {"gpt-4o-mini": "standard"})
    env = {
        "BATCHERY_TIERS_FILE": str(tiers),
        # the lease and heartbeat settings are the defaults: recovery is timed as a user would see it
        "BATCHERY_RESEND_AFTER_SECONDS": "8",
        "BATCHERY_SHUTDOWN_GRACE_SECONDS": "20",
        # the PostgreSQL server is shared: a pool of 8 connections a worker (8 more in a burst), which
        # claim and store as fast as more would
        "BATCHERY_WORKER_DB_POOL_SIZE": "8",
    }
    sim = ("--no-limits", "--latency", "fixed:2000")
    with migrated_database() as database, private_redis_db() as redis_url:
        worker_args = ("--concurrency", str(THREADS))
        with running_stack(
            tmp, database, redis_url, sim_args=sim, workers=2, worker_args=worker_args, extra_env=env
        ) as s:
            s.env["DATABASE_URL"] = database
            yield s


def _submit(api: httpx.Client, count: int, lot: int = 0) -> list[str]:
    """Submit ``count`` chat jobs in one bulk request; returns their ids in order."""
    requests = [chat_request(prompt=f"lot {lot} job {index}") for index in range(count)]
    jobs = [{"kind": "chat", "request": request} for request in requests]
    response = api.post("/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == count, body
    return [str(item["id"]) for item in body["data"]]


def _wait_ready(worker: Process) -> None:
    wait_for(
        lambda: "ready" in worker.log_path.read_text(errors="replace"),
        timeout=60,
        what=f"{worker.name} ready",
    )


def _wait_broker_marked(stack: Stack) -> None:
    """Wait for the first dispatcher round, which finds a new Redis unmarked and re-sends the window."""
    key = RedisKeys(stack.env.get("BATCHERY_REDIS_PREFIX", "batchery")).broker_epoch()
    broker = redis.Redis.from_url(stack.env["REDIS_URL"], socket_timeout=5)
    try:
        wait_for(lambda: bool(broker.exists(key)), timeout=30, what="the first dispatcher round")
    finally:
        broker.close()


def _peak_in_flight(sim: httpx.Client, at_least: int, timeout: float) -> int | None:
    """Poll the simulator while the calls of a lot of ``JOBS`` start; returns the calls in flight once
    all are, or once at least ``at_least`` are and the count stopped rising. None as soon as so many
    calls have ended that the rest can no longer reach ``at_least``."""
    deadline = time.monotonic() + timeout
    previous = -1
    while True:
        stats = sim.get("/_stats").json()
        in_flight = int(stats["in_flight"])
        if in_flight == JOBS or at_least <= in_flight <= previous:
            return in_flight
        if JOBS - stats["requests_total"] < at_least:
            return None
        assert time.monotonic() < deadline, f"the calls did not start: {stats}"
        previous = in_flight
        time.sleep(0.05)


def _lot_in_flight(api: httpx.Client, sim: httpx.Client, database: str) -> tuple[list[str], int, int]:
    """Submit lots of ``JOBS`` until nearly all the calls of one are in flight at once; returns that
    lot's ids, its calls in flight, and the jobs submitted in all. A lot that falls short (a machine
    too busy to start them all within the shortest latency) runs to its end before the next, so the
    simulator's counts start afresh with each lot."""
    submitted = 0
    for lot in range(LOTS):
        sim.post("/_stats/reset")
        ids = _submit(api, JOBS, lot)
        submitted += JOBS
        in_flight = _peak_in_flight(sim, IN_FLIGHT_AT_KILL, timeout=20)
        if in_flight is not None:
            return ids, in_flight, submitted
        logger.warning("lot %d: fewer than %d calls in flight at once", lot, IN_FLIGHT_AT_KILL)
        wait_until_finished(database, submitted, timeout=60)
    raise AssertionError(f"no lot of {JOBS} jobs had {IN_FLIGHT_AT_KILL} calls in flight at once")


def test_sigkill_mid_flight_loses_nothing_and_runs_nothing_twice(stack: Stack) -> None:
    database = stack.env["DATABASE_URL"]
    _wait_ready(stack.processes["worker0"])
    _wait_ready(stack.processes["worker1"])
    _wait_broker_marked(stack)
    with stack.api() as api, stack.sim() as sim:
        ids, in_flight_at_kill, submitted = _lot_in_flight(api, sim, database)
        stack.processes["worker0"].signal(signal.SIGKILL)
        killed_at = utcnow()
        logger.info("SIGKILL with %d calls in flight", in_flight_at_kill)
        counts = wait_until_finished(database, submitted, timeout=90)
        stats = sim.get("/_stats").json()
    assert counts == {"succeeded": submitted}, counts
    ((last,),) = query(database, "SELECT max(finished_at) FROM jobs WHERE id = ANY(:ids)", ids=ids)
    logger.info("the last job finished %.1f s after the kill", (last - killed_at).total_seconds())
    assert last - killed_at < timedelta(seconds=45), (last, killed_at)
    outcomes = attempt_outcomes(database)
    assert len(outcomes) == submitted and set(ids) <= set(outcomes)
    assert all(log.count("succeeded") == 1 and log[-1] == "succeeded" for log in outcomes.values())
    lost = sum(outcomes[job_id].count("lost") for job_id in ids)
    logger.info("%d attempts lost, %d upstream calls", lost, stats["requests_total"])
    # the surviving worker held at most THREADS of the calls in flight and the killed one the rest,
    # each cut short and logged as lost (but for any stored in the instant before the kill)
    assert lost >= in_flight_at_kill - THREADS - 5, (lost, in_flight_at_kill)
    # the simulator counts this lot's calls: each job's one that succeeded, and at most one for each
    # attempt the kill cut short
    assert stats["requests_total"] <= JOBS + lost, (stats["requests_total"], lost)
    assert stats["requests_total"] <= JOBS + in_flight_at_kill, (stats["requests_total"], in_flight_at_kill)
    assert stats["by_status"] == {"200": stats["requests_total"]}


def test_sigterm_lets_calls_finish_and_gives_back_the_rest(stack: Stack) -> None:
    database = stack.env["DATABASE_URL"]
    stack.processes["worker0"].stop()  # killed already, unless the test before failed early
    stack.processes["worker1"].stop()
    worker = stack.start_worker("worker-graceful", "--concurrency", "3")
    with stack.api() as api, stack.sim() as sim:
        _wait_ready(worker)
        sim.post("/_control", json={"latency": "fixed:3000"})
        backoff = api.post(
            "/v1/jobs", json={"kind": "chat", "request": chat_request(user="sim:status=503")}
        ).json()["id"]
        wait_for(lambda: _outcomes(database, backoff) == ["retrying"], timeout=20, what="a job in backoff")
        ids = _submit(api, 6)
        wait_for(
            lambda: sim.get("/_stats").json()["in_flight"] == 2, timeout=20, interval=0.05, what="2 calls"
        )
        stopped_at = time.monotonic()
        worker.signal(signal.SIGTERM)
        worker.popen.wait(timeout=30)
        worker.stop()
        assert time.monotonic() - stopped_at < 20  # it did not sit out the 20 s backoff
        states = dict(
            query(database, "SELECT id, status FROM jobs WHERE id = ANY(:ids)", ids=[*ids, backoff])
        )
        done = [job_id for job_id in ids if states[job_id] == "succeeded"]
        assert len(done) == 2 and all(_outcomes(database, job_id) == ["succeeded"] for job_id in done)
        assert sorted(states.values()).count("queued") == 5  # four never started, the one in backoff
        released = query(database, "SELECT attempts, lease_owner FROM jobs WHERE id = :id", id=backoff)
        assert released == [(1, None)]  # its one call counted, the attempt it slept before uncounted
        assert "failed" not in status_counts(database)
        api.post(f"/v1/jobs/{backoff}/cancel")
        sim.post("/_control", json={"latency": "fixed:0"})
        stack.start_worker("worker-after", "--concurrency", "3")
        jobs = stack.wait_jobs(api, ids, timeout=60)
    assert [job["status"] for job in jobs] == ["succeeded"] * 6


def _outcomes(database: str, job_id: str) -> list[str]:
    return [
        row[0]
        for row in query(
            database, "SELECT outcome FROM job_attempts WHERE job_id = :id ORDER BY number", id=job_id
        )
    ]
