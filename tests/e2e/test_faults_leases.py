"""Leases with the default settings (a 30 s lease, renewed by each worker's heartbeat every 5 s).

- A worker cut off from the database for longer than the lease, mid-call: its lease passes, the job
  runs once more on a worker that can reach the database, and the cut-off worker's late result is
  refused by fencing (its claim's token is no longer the job's).
- A call that lasts five minutes, its worker alive: the heartbeat keeps the lease, and the job runs
  exactly once.

The cut-off worker reaches PostgreSQL through a TCP proxy the test takes down. It serves one thread of
the standard tier only, so while its one call is in flight it takes no other message (prefetch 1): the
job's message sent again after its lease passed goes to the other worker. The five-minute job is in
a tier of its own (a timeout above five minutes) that only the other worker serves; it is submitted
during the first test and checked by the second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from testbed.processes import Process, batchery, wait_for
from testbed.services import private_redis_db
from tests.factories import chat_request
from tests.support.job_rows import attempt_outcomes, migrated_database, query
from tests.support.stack import Stack, running_stack
from tests.support.tcp_proxy import TcpProxy
from tests.support.tiers_file import write_tiers

pytestmark = [pytest.mark.e2e]

CALL_MS = 10_000  # the cut-off worker's call: it ends during the outage
OUTAGE_SECONDS = 60  # longer than the default 30 s lease, the call again, and a round
LONG_CALL_MS = 300_000
TIERS = {
    "standard": {"concurrency": 4, "timeout_seconds": 60},
    "long": {"concurrency": 2, "timeout_seconds": 400},
}
SUBMITTED: dict[str, str] = {}


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="module")
def proxy(database: str) -> Iterator[TcpProxy]:
    target = make_url(database)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("leases")
    tiers = write_tiers(tmp / "tiers.toml", TIERS, {"gpt-4o-mini": "standard", "gpt-4o": "long"})
    env = {"BATCHERY_TIERS_FILE": str(tiers)}  # the lease and heartbeat settings are the defaults
    with private_redis_db() as redis_url:
        with running_stack(tmp, database, redis_url, workers=0, extra_env=env) as running:
            yield running


def _start(stack: Stack, name: str, database_url: str, *args: str) -> Process:
    env = {**stack.env, "DATABASE_URL": database_url}
    process = Process(name, batchery("worker", "--name", f"{name}@%h", *args), env, stack.log_dir)
    stack.processes[name] = process  # the stack stops every process named worker…
    wait_for(
        lambda: "ready" in process.log_path.read_text(errors="replace"), timeout=60, what=f"{name} ready"
    )
    return process


@pytest.mark.timeout(240)
def test_a_worker_cut_off_past_its_lease_loses_the_job_and_its_late_result_is_refused(
    stack: Stack, database: str, proxy: TcpProxy
) -> None:
    through_proxy = make_url(database).set(port=proxy.port).render_as_string(hide_password=False)
    cut_off = _start(stack, "worker-cut-off", through_proxy, "--tier", "standard", "--concurrency", "1")
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_stats/reset")
        request = chat_request(user=f"sim:latency={CALL_MS}")
        job_id = api.post("/v1/jobs", json={"kind": "chat", "request": request}).json()["id"]
        wait_for(lambda: sim.get("/_stats").json()["in_flight"] == 1, timeout=30, what="the call started")
        proxy.down()
        down_at = time.monotonic()
        _start(stack, "worker-healthy", database, "--concurrency", "4")
        long_request = chat_request(model="gpt-4o", user=f"sim:latency={LONG_CALL_MS}")
        SUBMITTED["long"] = api.post("/v1/jobs", json={"kind": "chat", "request": long_request}).json()["id"]
        # the lease passes, the healthy worker's dispatcher re-queues the job, and it runs there
        (job,) = stack.wait_jobs(api, [job_id], timeout=OUTAGE_SECONDS - 5)
        assert job["status"] == "succeeded" and job["attempts"] == 2, job
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        proxy.up()
        # the cut-off worker's result, held through the outage, meets the fence once it can write
        try:
            wait_for(
                lambda: "lease_lost" in cut_off.log_path.read_text(errors="replace"),
                timeout=60,
                what="the cut-off worker's late write refused",
            )
        except TimeoutError as exc:
            raise AssertionError(cut_off.log_tail(60)) from exc
        stats = sim.get("/_stats").json()
    assert attempt_outcomes(database)[job_id] == ["lost", "succeeded"]
    rows = query(database, "SELECT status, attempts, lease_owner FROM jobs WHERE id = :id", id=job_id)
    assert rows == [("succeeded", 2, None)]
    assert stats["requests_total"] == 2  # the cut-off call and the one that succeeded: no third


@pytest.mark.timeout(420)
def test_a_five_minute_call_with_its_worker_alive_runs_exactly_once(stack: Stack, database: str) -> None:
    assert "long" in SUBMITTED, "the test before submits the long job"
    job_id = SUBMITTED["long"]
    with stack.api() as api, stack.sim() as sim:
        (job,) = stack.wait_jobs(api, [job_id], timeout=380)
        stats = sim.get("/_stats").json()
    assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert attempt_outcomes(database)[job_id] == ["succeeded"]
    assert stats["requests_total"] == 3  # the two of the test before, and this job's one
    assert stats["by_status"] == {"200": 3}
