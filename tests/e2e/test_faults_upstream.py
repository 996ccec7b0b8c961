"""A misbehaving upstream: 30% 5xx and 5% hangs (every job still succeeds within its attempts, hung
calls end at the tier's timeout); the same job id published three times (one upstream call, one
result); and a poison job that fails every call (it fails with a clear error after its attempts, and
the jobs beside it are not held up)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from config.settings import load_settings
from infra.celery_conf import RUN_JOB_TASK
from testbed.processes import wait_for
from testbed.services import fresh_postgres_database, private_redis_db
from tests.factories import chat_request
from tests.support.stack import Stack, running_stack
from tests.support.tiers_file import write_tiers
from workers.celery_app import create_celery

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

MAX_ATTEMPTS = 12
HANG_SECONDS = 8
TIER = {
    "concurrency": 8,
    "timeout_seconds": 1,
    "max_attempts": MAX_ATTEMPTS,
    "backoff_base_seconds": 0.2,
    "backoff_cap_seconds": 1.0,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from cli.migrations import upgrade

    tmp: Path = tmp_path_factory.mktemp("upstream")
    tiers = write_tiers(tmp / "tiers.toml", {"standard": TIER}, {"gpt-4o-mini": "standard"})
    env = {"BATCHERY_TIERS_FILE": str(tiers)}
    sim = ("--no-limits", "--error-rate", "0.3", "--hang-rate", "0.05", "--hang-seconds", str(HANG_SECONDS))
    with fresh_postgres_database() as database, private_redis_db() as redis_url:
        upgrade(database)
        with running_stack(tmp, database, redis_url, sim_args=sim, workers=2, extra_env=env) as running:
            yield running


def _submit(api: httpx.Client, count: int, **request: object) -> list[str]:
    ids = []
    for index in range(count):
        body = {"kind": "chat", "request": chat_request(prompt=f"job {index}", **request)}
        response = api.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


def _seconds(attempt: dict[str, object]) -> float:
    started = datetime.fromisoformat(str(attempt["started_at"]))
    return (datetime.fromisoformat(str(attempt["finished_at"])) - started).total_seconds()


def test_errors_and_hangs_are_retried_until_every_job_succeeds(stack: Stack) -> None:
    with stack.api() as api:
        ids = _submit(api, 100)
        jobs = [api.get(f"/v1/jobs/{job['id']}").json() for job in stack.wait_jobs(api, ids, timeout=100)]
    assert [job["status"] for job in jobs] == ["succeeded"] * 100
    attempts = [attempt for job in jobs for attempt in job["attempts_log"]]
    assert all(job["attempts"] == len(job["attempts_log"]) <= MAX_ATTEMPTS for job in jobs)
    retried = [attempt for attempt in attempts if attempt["outcome"] == "retrying"]
    assert any(attempt["status_code"] in (500, 502, 503) for attempt in retried)
    hung = [attempt for attempt in retried if attempt["error_type"] == "timeout"]
    assert hung, "no call hung"
    assert all(1.0 <= _seconds(attempt) < HANG_SECONDS / 2 for attempt in hung)  # ended at the 1 s timeout
    assert all(attempt["wait_before_next_seconds"] is not None for attempt in retried)


def test_a_job_published_three_times_is_called_once(stack: Stack) -> None:
    settings = load_settings(redis_url=stack.env["REDIS_URL"], tiers_file=stack.env["BATCHERY_TIERS_FILE"])
    broker = create_celery(settings)
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_control", json={"error_rate": 0, "hang_rate": 0, "latency": "fixed:600"})
        # calls hung by the test before (the simulator counts a call when it ends) must not be counted here
        wait_for(
            lambda: int(sim.get("/_stats").json()["in_flight"]) == 0,
            timeout=HANG_SECONDS + 10,
            what="earlier hung calls ended",
        )
        sim.post("/_stats/reset")

        def skipped() -> int:
            logs = "".join(p.log_tail(100_000) for n, p in stack.processes.items() if n.startswith("worker"))
            return sum(1 for line in logs.splitlines() if "job skipped" in line and job_id in line)

        job_id = _submit(api, 1)[0]
        for _ in range(2):  # duplicates while the first runs
            broker.send_task(RUN_JOB_TASK, args=[job_id], queue="tier.standard")
        (job,) = stack.wait_jobs(api, [job_id])
        broker.send_task(RUN_JOB_TASK, args=[job_id], queue="tier.standard")  # and one after it finished
        wait_for(lambda: skipped() >= 3, timeout=30, what="three duplicates skipped")
        shown = api.get(f"/v1/jobs/{job_id}").json()
        stats = sim.get("/_stats").json()
        sim.post("/_control", json={"latency": "fixed:0"})
    broker.close()
    assert job["status"] == "succeeded"
    assert stats["requests_total"] == 1
    assert [a["outcome"] for a in shown["attempts_log"]] == ["succeeded"] and shown["attempts"] == 1


def test_a_poison_job_fails_clearly_without_holding_up_the_others(stack: Stack) -> None:
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_control", json={"error_rate": 0, "hang_rate": 0, "latency": "fixed:0"})
        poison = _submit(api, 1, user="sim:status=500")[0]
        others = _submit(api, 20)
        done = stack.wait_jobs(api, [poison, *others], timeout=60)
        failed = api.get(f"/v1/jobs/{poison}").json()
    assert failed["status"] == "failed"
    assert failed["attempts"] == MAX_ATTEMPTS
    assert failed["error"]["status_code"] == 500 and failed["error"]["message"]
    outcomes = [attempt["outcome"] for attempt in failed["attempts_log"]]
    assert outcomes == ["retrying"] * (MAX_ATTEMPTS - 1) + ["failed"]
    assert all(job["status"] == "succeeded" and job["attempts"] == 1 for job in done[1:])
    poison_done = datetime.fromisoformat(failed["finished_at"])
    assert all(datetime.fromisoformat(job["finished_at"]) < poison_done for job in done[1:])
