"""``POST /v1/jobs/bulk`` against real PostgreSQL (and SQLite) and real Redis: per-item checks and errors,
one transaction for the valid items, the fast path limited to the window, the tenant cap, scopes and
the submitted-jobs counter."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.deps import get_enqueuer
from api.main import create_app
from config.settings import Settings, load_settings
from domain.jobs.bulk_schemas import MAX_BULK_JOBS
from domain.metrics import catalog
from domain.metrics.store import MetricStore
from domain.storage.models import Job
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from tests.factories import chat_request, embedding_request, vision_request
from tests.support.keys import bearer, create_key
from tests.support.tiers_file import write_tiers

pytestmark = pytest.mark.integration


def _settings(database_url: str, redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with tiers of their own (unique names), so this test's windows start empty."""
    suffix = uuid.uuid4().hex[:8]
    chat, embed = f"chat{suffix}", f"embed{suffix}"
    tiers = write_tiers(
        tmp_path / "tiers.toml",
        {chat: {"concurrency": 2}, embed: {"concurrency": 1}},
        {"gpt-4o-mini": chat, "gpt-4o": chat, "text-embedding-3-small": embed},
    )
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        tiers_file=tiers,
        redis_prefix=f"bulk{suffix}",
        **overrides,
    )


@pytest.fixture
def settings(postgres_url: str, redis_url: str, tmp_path: Path) -> Settings:
    return _settings(postgres_url, redis_url, tmp_path)


def _client(settings: Settings, scopes: tuple[str, ...] | None = None) -> TestClient:
    tenant = f"bulk-{uuid.uuid4().hex[:8]}"
    key = (
        create_key(settings.database_url, tenant)
        if scopes is None
        else create_key(settings.database_url, tenant, scopes)
    )
    return TestClient(create_app(settings), headers=bearer(key))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with _client(settings) as test_client:
        yield test_client


def _rows(settings: Settings, ids: list[str]) -> dict[str, Job]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            jobs = session.scalars(select(Job).where(Job.id.in_(ids))).all()
            session.expunge_all()
            return {job.id: job for job in jobs}
    finally:
        engine.dispose()


def _queued_ids(settings: Settings, queue: str) -> list[str]:
    messages = redis.Redis.from_url(settings.redis_url).lrange(queue, 0, -1)
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in messages]


def test_valid_items_are_stored_and_each_bad_one_is_answered_with_its_index_and_param(
    client: TestClient, settings: Settings
) -> None:
    jobs: list[Any] = [
        {"kind": "chat", "request": chat_request(), "metadata": {"row": "0"}, "priority": 5},
        {"kind": "chat", "request": {"model": "gpt-4o-mini", "messages": []}},
        {"kind": "chat", "request": chat_request("no-such-model")},
        "not an object",
        {"kind": "embedding", "request": embedding_request()},
        {"kind": "chat", "request": chat_request(), "surprise": 1},
        {"kind": "vision", "request": vision_request()},
        {"kind": "chat", "request": chat_request(), "webhook_url": "ftp://example.com/hook"},
    ]

    response = client.post("/v1/jobs/bulk", json={"jobs": jobs})

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (3, 5)
    assert [item["index"] for item in body["data"]] == list(range(len(jobs)))
    assert [item["status"] for item in body["data"]] == [
        "queued", "rejected", "rejected", "rejected", "queued", "rejected", "queued", "rejected"
    ]  # fmt: skip
    errors = {item["index"]: item["error"] for item in body["data"] if item["error"]}
    assert errors[1]["code"] == "invalid_request" and errors[1]["param"] == "jobs.1.request.messages"
    assert errors[2]["code"] == "unknown_model" and errors[2]["param"] == "jobs.2.request.model"
    assert "gpt-4o-mini" in errors[2]["message"]
    assert errors[3] == {
        "code": "invalid_request",
        "message": "jobs.3: each job must be a JSON object",
        "param": "jobs.3",
        "type": "invalid_request_error",
    }
    assert errors[5]["code"] == "invalid_request" and errors[5]["param"] == "jobs.5.surprise"
    assert errors[7]["code"] == "invalid_webhook_url" and errors[7]["param"] == "jobs.7.webhook_url"
    accepted = [item for item in body["data"] if item["status"] == "queued"]
    rows = _rows(settings, [item["id"] for item in accepted])
    assert len(rows) == 3 and all(row.status == "queued" for row in rows.values())
    first = rows[accepted[0]["id"]]
    assert first.priority == 5 and first.meta == {"row": "0"} and first.estimated_tokens > 0
    assert first.tier == accepted[0]["tier"]
    assert {row.kind for row in rows.values()} == {"chat", "embedding", "vision"}
    for item in accepted:  # each one is readable like any job
        assert client.get(f"/v1/jobs/{item['id']}").json()["status"] == "queued"


def test_the_fast_path_sends_only_what_fits_in_each_window_and_the_rest_wait_in_the_backlog(
    client: TestClient, settings: Settings
) -> None:
    chat_tier = settings.tiers.tier_for("gpt-4o-mini")
    embed_tier = settings.tiers.tier_for("text-embedding-3-small")
    assert chat_tier is not None and embed_tier is not None
    jobs = [{"kind": "chat", "request": chat_request(prompt=f"n{i}")} for i in range(7)]
    jobs += [{"kind": "embedding", "request": embedding_request()} for _ in range(3)]

    body = client.post("/v1/jobs/bulk", json={"jobs": jobs}).json()

    ids = [item["id"] for item in body["data"]]
    rows = _rows(settings, ids)
    sent = [job_id for job_id in ids if rows[job_id].dispatched_at is not None]
    assert sent == ids[:4] + ids[7:9]  # windows: 2 x concurrency = 4 chat and 2 embedding places
    assert _queued_ids(settings, chat_tier.queue) == ids[:4][::-1]  # LPUSH: the newest first
    assert _queued_ids(settings, embed_tier.queue) == ids[7:9][::-1]

    again = client.post("/v1/jobs/bulk", json={"jobs": jobs[:2]}).json()
    more = _rows(settings, [item["id"] for item in again["data"]])
    assert all(row.dispatched_at is None for row in more.values())  # the window is full


def test_ids_that_cannot_be_sent_go_back_to_the_backlog(client: TestClient, settings: Settings) -> None:
    class Down:
        def send_many(self, jobs: list[tuple[str, str]], labels: object = None) -> list[str]:
            return [job_id for job_id, _ in jobs]

    client.app.dependency_overrides[get_enqueuer] = lambda: Down()  # type: ignore[attr-defined]
    body = client.post("/v1/jobs/bulk", json={"jobs": [{"kind": "chat", "request": chat_request()}]}).json()

    assert body["accepted"] == 1
    row = _rows(settings, [body["data"][0]["id"]])[body["data"][0]["id"]]
    assert row.status == "queued" and row.dispatched_at is None  # the dispatcher sends it later


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"jobs": []}, "jobs"),
        ({"jobs": [{"kind": "chat", "request": chat_request()}] * (MAX_BULK_JOBS + 1)}, "jobs"),
        ({"jobs": {"kind": "chat"}}, "jobs"),
        ({}, "jobs"),
        ({"jobs": [], "extra": 1}, None),
    ],
)
def test_a_bad_envelope_is_refused_as_a_whole(
    client: TestClient, payload: dict[str, Any], param: str | None
) -> None:
    response = client.post("/v1/jobs/bulk", json=payload)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    if param is not None:
        assert error["param"] == param


def test_a_thousand_jobs_are_accepted_in_one_request(client: TestClient, settings: Settings) -> None:
    jobs = [{"kind": "chat", "request": chat_request(prompt=f"job {i}")} for i in range(MAX_BULK_JOBS)]

    body = client.post("/v1/jobs/bulk", json={"jobs": jobs}).json()

    assert body["accepted"] == MAX_BULK_JOBS and body["rejected"] == 0
    ids = [item["id"] for item in body["data"]]
    assert len(set(ids)) == MAX_BULK_JOBS and ids == sorted(ids)  # ids sort in submission order
    assert len(_rows(settings, ids)) == MAX_BULK_JOBS
    tier = settings.tiers.tier_for("gpt-4o-mini")
    assert tier is not None
    store = MetricStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)

    def submitted() -> float:
        return (
            store.counters().get(catalog.JOBS_SUBMITTED.name, {}).get((tier.name, "chat", "gpt-4o-mini"), 0)
        )

    # the API's counters reach Redis within a quarter of a second (``domain.metrics.job_counters``)
    deadline = time.monotonic() + 5
    while submitted() < MAX_BULK_JOBS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert submitted() >= MAX_BULK_JOBS


def test_over_the_tenant_cap_nothing_is_stored(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    settings = _settings(postgres_url, redis_url, tmp_path, max_queued_jobs_per_tenant=3)
    with _client(settings) as client:
        two = [{"kind": "chat", "request": chat_request()}] * 2
        assert client.post("/v1/jobs/bulk", json={"jobs": two}).json()["accepted"] == 2

        response = client.post("/v1/jobs/bulk", json={"jobs": two})

        assert response.status_code == 429
        assert response.json()["error"]["code"] == "tenant_queue_full"
        assert response.headers["retry-after"]
        assert len(client.get("/v1/jobs", params={"limit": 100}).json()["data"]) == 2


def test_a_key_without_the_write_scope_is_refused(settings: Settings) -> None:
    with _client(settings, scopes=("jobs:read",)) as client:
        response = client.post("/v1/jobs/bulk", json={"jobs": [{"kind": "chat", "request": chat_request()}]})

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


def test_bulk_submission_works_on_sqlite(sqlite_url: str, redis_url: str, tmp_path: Path) -> None:
    settings = _settings(sqlite_url, redis_url, tmp_path)
    with _client(settings) as client:
        jobs = [{"kind": "chat", "request": chat_request()}, {"kind": "chat", "request": {}}] * 50

        body = client.post("/v1/jobs/bulk", json={"jobs": jobs}).json()

        assert (body["accepted"], body["rejected"]) == (50, 50)
        assert len(_rows(settings, [item["id"] for item in body["data"] if item["id"]])) == 50
