"""Budgets on a real stack (uvicorn API, a Celery worker, the simulator, PostgreSQL): thirty parallel
HTTP submitters against a budget with room for ten jobs get exactly ten accepted; the jobs run, the
settlement moves their estimates to the cost of the usage the simulator reported, and that spend equals
what ``GET /v1/usage`` reports for the tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from config.prices import load_prices
from domain.budgets.settlement import settle_finished
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from tests.factories import chat_request
from tests.support.keys import bearer, create_key
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

JOB = {"kind": "chat", "request": chat_request(max_tokens=64)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("budget-stack")
    with running_stack(tmp, postgres_url, redis_url) as running:
        yield running


def test_parallel_submitters_meet_the_budget_and_settlement_matches_the_usage_report(
    stack: Stack, postgres_url: str
) -> None:
    tenant = f"e2e-budget-{uuid.uuid4().hex[:8]}"
    key = create_key(postgres_url, tenant, ["jobs:read", "jobs:write"])
    unbudgeted = create_key(postgres_url, f"{tenant}-probe", ["jobs:write"])
    with stack.api() as admin, stack.api(key) as api, stack.api(unbudgeted) as other:
        probe = other.post("/v1/jobs", json=JOB).json()  # a tenant without a budget has no limit
        per_job = probe["estimated_tokens"]
        assert per_job > 64
        limit = 10 * per_job + per_job // 2
        budget = admin.put(f"/v1/admin/budgets/{tenant}", json={"tokens_per_day": limit, "usd_per_day": 100})
        assert budget.status_code == 200, budget.text

        def submit(_: int) -> httpx.Response:
            with httpx.Client(base_url=stack.api_url, timeout=30.0, headers=bearer(key)) as client:
                return client.post("/v1/jobs", json=JOB)

        with ThreadPoolExecutor(max_workers=30) as pool:
            answers = list(pool.map(submit, range(30)))
        accepted = [answer.json()["id"] for answer in answers if answer.status_code == 202]
        refused = [answer for answer in answers if answer.status_code == 429]
        assert len(accepted) == 10 and len(refused) == 20, [a.status_code for a in answers]
        assert all(answer.json()["error"]["code"] == "budget_exceeded" for answer in refused)
        assert {"retry-after", "x-budget-reset"} <= set(refused[0].headers)
        day = admin.get(f"/v1/admin/budgets/{tenant}").json()["periods"][0]
        assert day["reserved_tokens"] == 10 * per_job <= limit

        jobs = stack.wait_jobs(api, accepted)
        assert all(job["status"] == "succeeded" for job in jobs)
        engine = make_engine(postgres_url, pool_size=1)
        try:
            with session_scope(make_session_factory(engine)) as session:
                settle_finished(session, load_prices(), now=datetime.now(UTC))
        finally:
            engine.dispose()
        day = admin.get(f"/v1/admin/budgets/{tenant}").json()["periods"][0]
        usage = admin.get("/v1/usage", params={"tenant": tenant}).json()["total"]
    assert day["reserved_tokens"] == 0 and day["reserved_usd"] == 0
    assert day["spent_tokens"] == sum(job["usage"]["total_tokens"] for job in jobs) > 0
    assert day["spent_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert day["spent_usd"] == pytest.approx(usage["cost_usd"], abs=1e-8) and usage["cost_usd"] > 0
