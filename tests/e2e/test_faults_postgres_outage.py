"""PostgreSQL unreachable for 20 s, through a TCP proxy the test controls: the API answers 503 at once,
workers back off, no job is marked failed because of it, and every job completes afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from testbed.processes import wait_for
from testbed.services import private_redis_db
from tests.factories import chat_request
from tests.support.job_rows import attempt_outcomes, migrated_database, status_counts, wait_until_finished
from tests.support.stack import Stack, running_stack
from tests.support.tcp_proxy import TcpProxy
from tests.support.tiers_file import write_tiers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

JOBS = 120
OUTAGE_SECONDS = 20


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
def stack(tmp_path_factory: pytest.TempPathFactory, database: str, proxy: TcpProxy) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("outage")
    tiers = write_tiers(tmp / "tiers.toml", {"standard": {"concurrency": 8}}, {"gpt-4o-mini": "standard"})
    through_proxy = make_url(database).set(port=proxy.port).render_as_string(hide_password=False)
    env = {"BATCHERY_TIERS_FILE": str(tiers), "BATCHERY_DB_RETRY_SECONDS": "90"}
    sim = ("--no-limits", "--latency", "uniform:200:600")
    with private_redis_db() as redis_url:
        with running_stack(tmp, through_proxy, redis_url, sim_args=sim, workers=2, extra_env=env) as running:
            yield running


def test_a_database_outage_fails_no_job(stack: Stack, database: str, proxy: TcpProxy) -> None:
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_stats/reset")
        ids = [
            api.post(
                "/v1/jobs", json={"kind": "chat", "request": chat_request(prompt=f"job {index}")}
            ).json()["id"]
            for index in range(JOBS)
        ]
        wait_for(lambda: status_counts(database).get("succeeded", 0) >= 10, timeout=30, what="some jobs done")

        proxy.down()
        outage_started = time.monotonic()
        with httpx.Client(base_url=stack.api_url, headers=api.headers, timeout=5.0) as impatient:
            refused = impatient.post(
                "/v1/jobs", json={"kind": "chat", "request": chat_request(prompt="refused")}
            )
            read = impatient.get(f"/v1/jobs/{ids[0]}")
            ready = impatient.get("/readyz")
        assert refused.status_code == 503, refused.text  # and no row: nothing was accepted
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert read.status_code == 503 and ready.status_code == 503
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        during = status_counts(database)  # read past the proxy: nothing failed meanwhile
        proxy.up()

        counts = wait_until_finished(database, JOBS, timeout=90)
        stats = sim.get("/_stats").json()
    assert during.get("failed", 0) == 0
    assert counts == {"succeeded": JOBS}, counts
    outcomes = attempt_outcomes(database)
    assert all(log == ["succeeded"] for log in outcomes.values()), outcomes
    assert stats["requests_total"] == JOBS
    logs = "".join(
        process.log_tail(3000) for name, process in stack.processes.items() if name.startswith("worker")
    )
    assert "database unavailable while storing job" in logs  # calls ended during the outage, stored after
