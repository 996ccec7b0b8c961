"""Input limits and the per-tenant cap on queued jobs, over HTTP against real PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from api.main import create_app
from config.settings import load_settings
from domain.jobs import repository
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tenancy.quotas import RETRY_AFTER_SECONDS, queued_count_query, queued_jobs
from tests.factories import chat_request, new_job, vision_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@pytest.fixture
def client(postgres_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = load_settings(
        database_url=postgres_url,
        redis_url=redis_url,
        max_messages=5,
        max_metadata_bytes=64,
        max_url_length=256,
        max_queued_jobs_per_tenant=3,
    )
    key = create_key(postgres_url, f"limits-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings), headers=bearer(key)) as test_client:
        yield test_client


def _code(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


def test_each_limit_has_its_own_code(client: TestClient) -> None:
    many = chat_request()
    many["messages"] = [{"role": "user", "content": "hi"}] * 6
    assert _code(client.post("/v1/jobs", json={"kind": "chat", "request": many}), 422) == "too_many_messages"
    meta = {"kind": "chat", "request": chat_request(), "metadata": {"a": "x" * 40, "b": "y" * 40}}
    assert _code(client.post("/v1/jobs", json=meta), 422) == "metadata_too_large"
    hook = {"kind": "chat", "request": chat_request(), "webhook_url": "https://example.com/" + "x" * 300}
    response = client.post("/v1/jobs", json=hook)
    assert _code(response, 422) == "url_too_long" and response.json()["error"]["param"] == "webhook_url"
    image = {"kind": "vision", "request": vision_request(url="https://example.com/" + "x" * 300 + ".png")}
    assert _code(client.post("/v1/jobs", json=image), 422) == "url_too_long"
    assert _code(client.get("/v1/jobs", params={"tier": "x" * 300}), 414) == "uri_too_long"
    repeated = client.get("/v1/jobs?kind=chat&limit=2&kind=image")
    assert _code(repeated, 400) == "repeated_query_parameter" and repeated.json()["error"]["param"] == "kind"


def test_full_tenant_queue_answers_429_with_retry_after(client: TestClient) -> None:
    payload = {"kind": "chat", "request": chat_request()}
    first = client.post("/v1/jobs", json=payload, headers={"idempotency-key": "k1"})
    ids = [first.json()["id"]] + [client.post("/v1/jobs", json=payload).json()["id"] for _ in range(2)]
    refused = client.post("/v1/jobs", json=payload)
    assert _code(refused, 429) == "tenant_queue_full"
    assert refused.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    replay = client.post("/v1/jobs", json=payload, headers={"idempotency-key": "k1"})
    assert replay.status_code == 202 and replay.json()["id"] == ids[0]  # a replay is not new work
    listed = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert sorted(job["id"] for job in listed) == sorted(ids)  # the refused job was not stored
    assert client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    assert client.post("/v1/jobs", json=payload).status_code == 202  # room again


def test_queued_count_is_capped_and_uses_the_index(postgres_url: str) -> None:
    """The count stops at its cap (its cost is bounded by the limit), and PostgreSQL can answer it
    from the (tenant_id, status) index alone."""
    tenant = f"count-{uuid.uuid4().hex[:8]}"
    engine = make_engine(postgres_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            for _ in range(5):
                repository.create_job(session, new_job(tenant_id=tenant))
            repository.create_job(session, new_job(tenant_id=tenant + "-other"))
        with session_scope(make_session_factory(engine)) as session:
            assert queued_jobs(session, tenant_id=tenant, cap=3) == 3
            assert queued_jobs(session, tenant_id=tenant, cap=100) == 5
            query = queued_count_query(tenant_id=tenant, cap=100)
            compiled = str(
                query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(row[0] for row in session.execute(text("EXPLAIN " + compiled)))
        assert "ix_jobs_tenant_status" in plan and "Limit" in plan, plan
    finally:
        engine.dispose()
