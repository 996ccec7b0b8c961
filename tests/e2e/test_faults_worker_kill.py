"""Killing and stopping workers: SIGKILL one while 200 jobs are in flight (two workers with 16 calls
each at 1-2 s upstream latency, the rest queued) and every job still succeeds, its result stored once;
SIGTERM lets calls in flight finish and gives the rest back."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.factories import chat_request
from tests.support.job_rows import (
    attempt_outcomes,
    migrated_database,
    query,
    status_counts,
    wait_until_finished,
)
from tests.support.processes import wait_for
from tests.support.services import private_redis_db
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

TIERS = {
    "standard": {"concurrency": 16, "timeout_seconds": 10, "max_attempts": 3, "backoff_base_seconds": 20}
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("kill")
    tiers = write_tiers(tmp / "tiers.toml", TIERS, {"gpt-4o-mini": "standard"})
    env = {
        "BATCHERY_TIERS_FILE": str(tiers),
        "BATCHERY_LEASE_SECONDS": "8",  # far above a 2 s call; short so the test recovers quickly
        "BATCHERY_RESEND_AFTER_SECONDS": "8",
        "BATCHERY_SHUTDOWN_GRACE_SECONDS": "20",
    }
    sim = ("--no-limits", "--latency", "uniform:1000:2000")
    with migrated_database() as database, private_redis_db() as redis_url:
        worker_args = ("--concurrency", "16")  # few connections: the PostgreSQL server is shared
        with running_stack(
            tmp, database, redis_url, sim_args=sim, workers=2, worker_args=worker_args, extra_env=env
        ) as s:
            s.env["DATABASE_URL"] = database
            yield s


def _submit(api: httpx.Client, count: int) -> list[str]:
    """Submit ``count`` chat jobs, eight at a time."""

    def one(index: int) -> str:
        response = api.post("/v1/jobs", json={"kind": "chat", "request": chat_request(prompt=f"job {index}")})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_sigkill_mid_flight_loses_nothing_and_runs_nothing_twice(stack: Stack) -> None:
    database = stack.env["DATABASE_URL"]
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_stats/reset")
        ids = _submit(api, 200)
        wait_for(
            lambda: sim.get("/_stats").json()["in_flight"] >= 20,
            timeout=30,
            interval=0.05,
            what="calls in flight",
        )
        in_flight_at_kill = sim.get("/_stats").json()["in_flight"]
        stack.processes["worker0"].signal(signal.SIGKILL)
        counts = wait_until_finished(database, 200, timeout=90)
        stats = sim.get("/_stats").json()
    assert counts == {"succeeded": 200}, counts
    outcomes = attempt_outcomes(database)
    assert set(outcomes) == set(ids)
    assert all(log.count("succeeded") == 1 and log[-1] == "succeeded" for log in outcomes.values())
    lost = [job_id for job_id, log in outcomes.items() if "lost" in log]
    assert lost, "the kill interrupted no call"
    assert stats["requests_total"] <= 200 + in_flight_at_kill, (stats["requests_total"], in_flight_at_kill)
    assert stats["by_status"] == {"200": stats["requests_total"]}


def test_sigterm_lets_calls_finish_and_gives_back_the_rest(stack: Stack) -> None:
    database = stack.env["DATABASE_URL"]
    stack.processes["worker1"].stop()
    worker = stack.start_worker("worker-graceful", "--concurrency", "3")
    with stack.api() as api, stack.sim() as sim:
        wait_for(
            lambda: "ready" in worker.log_path.read_text(errors="replace"), timeout=30, what="worker ready"
        )
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
