"""Asking for the provider batch path over HTTP, on SQLite and PostgreSQL: a job's ``execution`` and
``completion_window``, the refusals with their codes, what ``GET /v1/jobs/{id}`` shows, a job cancelled
while it waits, and a batch whose ``execution`` (the SDK's ``extra_body``) defers its lines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from config.settings import Settings, load_settings
from domain.batches.lifecycle import run_ingest
from domain.storage.models import Job
from domain.storage.sessions import session_scope
from tests.factories import chat_request, embedding_request, image_request
from tests.support.batches import database_url, jsonl, request_line, retire_tenant, sessions
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration

__all__ = ["database_url", "sessions"]
Sessions = sessionmaker[Session]


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(database_url=database_url, redis_url=redis_url, openai_api_key="sk-test-provider")


@pytest.fixture
def tenant(sessions: Sessions) -> Iterator[str]:
    name = f"pbapi-{uuid.uuid4().hex[:8]}"
    yield name
    retire_tenant(sessions, name)


@pytest.fixture
def client(settings: Settings, database_url: str, tenant: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=bearer(create_key(database_url, tenant))) as test_client:
        yield test_client


def _submit(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/jobs", json={"kind": "chat", "request": chat_request(), **body})


def test_a_deferred_job_waits_for_a_provider_batch_and_says_so(
    client: TestClient, sessions: Sessions
) -> None:
    response = _submit(client, execution="auto", completion_window="48h")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["execution_path"] == "provider_batch" and job["provider_batch_id"] is None
    assert job["status"] == "running" and job["deadline_at"] is not None
    with session_scope(sessions) as session:
        row = session.get(Job, job["id"])
        assert row is not None and row.dispatched_at is None and row.lease_owner == "provider_batch:waiting"
    shown = client.get(f"/v1/jobs/{job['id']}").json()
    assert shown["execution_path"] == "provider_batch"
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200  # it ends at the next provider batch tick (cancel requested)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "live"),
        ({"execution": "live", "completion_window": "7d"}, "live"),
        ({"execution": "auto", "completion_window": "2h"}, "live"),  # cannot wait 24 hours
        ({"execution": "provider_batch"}, "provider_batch"),
    ],
)
def test_the_mode_and_the_window_choose_the_path(client: TestClient, body: dict[str, Any], path: str) -> None:
    response = _submit(client, **body)
    assert response.status_code == 202, response.text
    assert response.json()["execution_path"] == path
    assert response.json()["status"] == ("queued" if path == "live" else "running")


def test_embeddings_defer_and_images_run_live_in_auto(client: TestClient) -> None:
    embedding = client.post(
        "/v1/jobs", json={"kind": "embedding", "request": embedding_request(), "execution": "auto"}
    )
    image = client.post("/v1/jobs", json={"kind": "image", "request": image_request(), "execution": "auto"})
    assert embedding.json()["execution_path"] == "provider_batch"
    assert image.json()["execution_path"] == "live"


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (
            {"kind": "image", "request": image_request(), "execution": "provider_batch"},
            "provider_batch_unsupported",
            "execution",
        ),
        (
            {"execution": "provider_batch", "completion_window": "1h"},
            "completion_window_too_short",
            "completion_window",
        ),
        ({"execution": "later"}, "invalid_request", "execution"),
        ({"completion_window": "tomorrow"}, "invalid_request", "completion_window"),
    ],
)
def test_impossible_requests_are_refused_with_a_code(
    client: TestClient, body: dict[str, Any], code: str, param: str
) -> None:
    response = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request(), **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and param in (error["param"] or "")


def test_a_batch_in_auto_mode_defers_its_lines(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    lines = [request_line(f"q{i}") for i in range(3)]
    uploaded = client.post("/v1/files", files={"file": ("in.jsonl", jsonl(lines))}, data={"purpose": "batch"})
    body = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "execution": "auto",
    }
    created = client.post("/v1/batches", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["execution"] == "auto"
    outcome, _ = run_ingest(sessions, created.json()["id"], settings)
    assert outcome.status == "in_progress"
    with session_scope(sessions) as session:
        jobs = session.query(Job).filter(Job.batch_id == created.json()["id"]).all()
        assert len(jobs) == 3
        for job in jobs:
            assert (job.status, job.execution_path, job.lease_owner) == (
                "running",
                "provider_batch",
                "provider_batch:waiting",
            )
            assert job.deadline_at is not None and job.dispatched_at is None
    live = client.post("/v1/batches", json={**body, "execution": "live"})
    run_ingest(sessions, live.json()["id"], settings)
    with session_scope(sessions) as session:
        jobs = session.query(Job).filter(Job.batch_id == live.json()["id"]).all()
        assert {(job.status, job.execution_path) for job in jobs} == {("queued", "live")}


def test_bulk_jobs_refuse_deferred_execution(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs/bulk",
        json={"jobs": [{"kind": "chat", "request": chat_request(), "execution": "auto"}]},
    )
    assert response.status_code == 202, response.text
    (item,) = response.json()["data"]
    assert item["status"] == "rejected" and item["error"]["code"] == "execution_unsupported"
    assert item["error"]["param"] == "jobs.0.execution"


def test_metrics_show_deferred_jobs_apart_from_running_ones(client: TestClient) -> None:
    def gauges() -> dict[str, float]:
        text = client.get("/metrics").text
        wanted = ('batchery_deferred_jobs{tier="standard"}', 'batchery_jobs_in_flight{tier="standard"}')
        found = {
            name: float(value)
            for line in text.splitlines()
            if line.startswith(wanted) or line.startswith("batchery_provider_batches_in_flight ")
            for name, value in [line.rsplit(" ", 1)]
        }
        return found

    before = gauges()
    assert "batchery_provider_batches_in_flight" in before
    for _ in range(2):
        assert _submit(client, execution="provider_batch").status_code == 202
    after = gauges()
    deferred = 'batchery_deferred_jobs{tier="standard"}'
    running = 'batchery_jobs_in_flight{tier="standard"}'
    assert after[deferred] == before[deferred] + 2
    assert after[running] == before[running]


def test_deferred_jobs_count_against_the_tenants_queue_limit(
    database_url: str, redis_url: str, tenant: str
) -> None:
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        openai_api_key="sk-test-provider",
        max_queued_jobs_per_tenant=2,
    )
    with TestClient(create_app(settings), headers=bearer(create_key(database_url, tenant))) as client:
        assert _submit(client, execution="provider_batch").status_code == 202
        assert _submit(client, execution="provider_batch").status_code == 202
        refused = _submit(client, execution="provider_batch")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "tenant_queue_full"
