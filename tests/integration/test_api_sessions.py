"""The API's request sessions against real PostgreSQL: a route that commits its own work, one that only
reads, one that fails after writing, and one that fails before touching the database all give their
connection back, and what failed is rolled back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import chat_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@pytest.fixture
def app(postgres_url: str, redis_url: str) -> FastAPI:
    settings = load_settings(database_url=postgres_url, redis_url=redis_url, max_queued_jobs_per_tenant=1)
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI, postgres_url: str) -> Iterator[TestClient]:
    key = create_key(postgres_url, f"sessions-{uuid.uuid4().hex[:8]}")
    with TestClient(app, headers=bearer(key)) as test_client:
        yield test_client


def _checked_out(app: FastAPI) -> int:
    return int(app.state.engine.pool.checkedout())


def test_every_kind_of_route_gives_its_connection_back(app: FastAPI, client: TestClient) -> None:
    submitted = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
    assert submitted.status_code == 202, submitted.text  # commits its own work
    assert _checked_out(app) == 0
    job_id = submitted.json()["id"]
    assert client.get(f"/v1/jobs/{job_id}").json()["id"] == job_id  # reads, leaves a transaction open
    assert _checked_out(app) == 0
    assert client.get("/v1/jobs/job_nosuchjob").status_code == 404  # fails after a read
    assert _checked_out(app) == 0
    assert client.post("/v1/jobs", json={"kind": "chat", "request": {}}).status_code == 422  # no database
    assert _checked_out(app) == 0


def test_a_refusal_after_the_insert_is_rolled_back(app: FastAPI, client: TestClient) -> None:
    first = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
    assert first.status_code == 202, first.text
    # the tenant may hold one queued job: the second is inserted, counted, refused and rolled back
    refused = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "tenant_queue_full"
    assert _checked_out(app) == 0
    listed = client.get("/v1/jobs").json()["data"]
    assert [job["id"] for job in listed] == [first.json()["id"]]
