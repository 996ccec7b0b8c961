"""The drop-in OpenAI endpoints in process, against real Redis and both databases, with no worker: every
outside input gets a clear 4xx in OpenAI's error shape, a call that outlasts its wait answers 202 with
its job and a Location, the job is the one ``POST /v1/jobs`` would have made, and the models list."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import chat_request, vision_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def client(database_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = load_settings(database_url=database_url, redis_url=redis_url, openai_poll_seconds=0.2)
    with TestClient(create_app(settings), headers=bearer(create_key(database_url))) as test_client:
        yield test_client


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert {"code", "message", "param", "type"} <= set(error) and error["code"] == code, error
    return dict(error)


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({"x-batchery-timeout": "-1"}, chat_request(), 422, "invalid_request"),
        ({"x-batchery-timeout": "soon"}, chat_request(), 422, "invalid_request"),
        ({"x-batchery-priority": "101"}, chat_request(), 422, "invalid_request"),
        ({"x-batchery-cancel-on-disconnect": "maybe"}, chat_request(), 422, "invalid_request"),
        ({}, [chat_request()], 422, "invalid_request"),
        ({}, {"model": "gpt-4o-mini", "messages": []}, 422, "invalid_request"),
        ({}, {**chat_request(), "model": "no-such-model"}, 422, "unknown_model"),
        ({}, {**chat_request(), "stream": "yes"}, 422, "invalid_request"),
        ({}, {**chat_request(), "messages": [{"role": "user", "content": "a\x00b"}]}, 422, "invalid_request"),
    ],
)
def test_bad_input_is_a_clear_4xx_in_openais_shape(
    client: TestClient, headers: dict[str, str], body: Any, status: int, code: str
) -> None:
    _error(client.post("/v1/chat/completions", json=body, headers=headers), status, code)


def test_unparsable_json_unauthenticated_and_unscoped_callers_are_refused(
    client: TestClient, database_url: str
) -> None:
    garbled = client.post(
        "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(garbled, 400, "invalid_json")
    anonymous = client.post("/v1/chat/completions", json=chat_request(), headers={"authorization": ""})
    assert anonymous.status_code == 401
    reader = bearer(create_key(database_url, scopes=["jobs:read"]))
    assert client.post("/v1/chat/completions", json=chat_request(), headers=reader).status_code == 403
    assert client.get("/v1/models", headers=reader).status_code == 200


def test_a_call_outlasting_its_wait_answers_202_with_the_job_post_v1_jobs_would_make(
    client: TestClient,
) -> None:
    answer = client.post(
        "/v1/chat/completions",
        json=vision_request(),
        headers={"x-batchery-timeout": "0.3", "x-batchery-priority": "-5"},
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
    assert answer.headers["x-batchery-job-id"] == job["id"]
    assert job["status"] == "queued" and job["kind"] == "vision" and job["priority"] == -5
    same = client.post(
        "/v1/jobs", json={"kind": "vision", "request": vision_request(), "priority": -5}
    ).json()
    assert (job["tier"], job["model"], job["estimated_tokens"]) == (
        same["tier"],
        same["model"],
        same["estimated_tokens"],
    )
    assert client.get(answer.headers["location"]).json()["status"] == "queued"


def test_models_list_the_configured_tiers_in_openais_shape(client: TestClient) -> None:
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    ids = [model["id"] for model in listed["data"]]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids and ids == sorted(ids)
    assert all(
        model["object"] == "model" and model["owned_by"].startswith("batchery:") for model in listed["data"]
    )
    assert client.get("/v1/models/gpt-4o-mini").json()["id"] == "gpt-4o-mini"
    _error(client.get("/v1/models/no-such-model"), 404, "not_found")


def test_a_repeated_call_with_the_same_idempotency_key_waits_for_the_same_job(client: TestClient) -> None:
    headers = {"x-batchery-timeout": "0.2", "idempotency-key": "retry-1"}
    first = client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}, headers=headers
    )
    again = client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "y"}, headers=headers
    )
    _error(other, 422, "idempotency_key_reused")


def test_waiting_calls_hold_no_admission_slot(database_url: str, redis_url: str) -> None:
    """One write slot and no admission wait: a second submission while the first is in flight would be
    refused with 503. Drop-in calls give their slot back once their job is stored, so several can wait
    at once, and a plain submission still gets in beside them."""
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        openai_poll_seconds=0.2,
        api_max_inflight_writes=1,
        api_admission_wait_ms=0,
    )
    with TestClient(create_app(settings), headers=bearer(create_key(database_url))) as test_client:
        answers: list[Any] = []

        def call() -> None:
            answers.append(
                test_client.post(
                    "/v1/chat/completions", json=chat_request(), headers={"x-batchery-timeout": "3"}
                )
            )

        waiting = [threading.Thread(target=call) for _ in range(4)]
        for thread in waiting:
            thread.start()
            time.sleep(0.3)  # one after another: each is stored, then waits
        submitted = test_client.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
        for thread in waiting:
            thread.join(timeout=30)
    assert submitted.status_code == 202, submitted.text
    assert sorted(answer.status_code for answer in answers) == [202] * 4  # timed out waiting: no worker
