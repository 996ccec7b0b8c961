"""The HTTP API against real PostgreSQL and real Redis: validation, errors, submit, read, list, cancel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import REQUESTS, chat_request, vision_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@pytest.fixture
def client(postgres_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = load_settings(database_url=postgres_url, redis_url=redis_url, max_body_bytes=64 * 1024)
    with TestClient(create_app(settings), headers=bearer(create_key(postgres_url))) as test_client:
        yield test_client


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "param", "type"} <= set(body["error"])
    return dict(body["error"])


@pytest.mark.parametrize("kind", ["chat", "vision", "embedding", "image"])
def test_submit_each_kind_is_queued_and_sent(client: TestClient, redis_url: str, kind: str) -> None:
    response = client.post("/v1/jobs", json={"kind": kind, "request": REQUESTS[kind](), "priority": 3})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["kind"] == kind and job["priority"] == 3
    assert job["estimated_tokens"] > 0 or kind == "image"
    queue = {"chat": "tier.standard", "vision": "tier.premium", "embedding": "tier.embeddings"}.get(
        kind, "tier.images"
    )
    messages = redis.Redis.from_url(redis_url).lrange(queue, 0, -1)
    bodies = [json.loads(m) for m in messages]
    assert any(json.loads(_decode(b))[0] == [job["id"]] for b in bodies)
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]


def _decode(message: dict[str, Any]) -> str:
    import base64

    return base64.b64decode(message["body"]).decode()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"kind": "chat", "request": {"model": "gpt-4o-mini", "messages": []}}, 422, "invalid_request"),
        ({"kind": "chat", "request": {"model": "gpt-4o-mini"}}, 422, "invalid_request"),
        ({"kind": "vision", "request": chat_request("gpt-4o")}, 422, "invalid_request"),
        ({"kind": "vision", "request": vision_request(url="ftp://x/y.png")}, 422, "invalid_request"),
        ({"kind": "embedding", "request": {"model": "text-embedding-3-small"}}, 422, "invalid_request"),
        ({"kind": "image", "request": {"model": "gpt-image-1"}}, 422, "invalid_request"),
        ({"kind": "chat", "request": chat_request("no-such-model")}, 422, "unknown_model"),
        ({"kind": "audio", "request": chat_request()}, 422, "invalid_request"),
        ({"kind": "chat", "request": "not an object"}, 422, "invalid_request"),
        ({"kind": "chat", "request": chat_request(), "priority": "high"}, 422, "invalid_request"),
        ({"kind": "chat", "request": chat_request(), "webhook_url": "ftp://x"}, 422, "invalid_webhook_url"),
        ({"kind": "chat", "request": chat_request(), "metadata": {"k": "v" * 600}}, 422, "invalid_request"),
        ({"kind": "chat", "request": chat_request(), "surprise": 1}, 422, "invalid_request"),
    ],
)
def test_bad_bodies_get_a_clear_4xx(
    client: TestClient, payload: dict[str, Any], status: int, code: str
) -> None:
    response = client.post("/v1/jobs", json=payload)
    assert response.status_code == status, response.text
    assert _error(response)["code"] == code


def test_unknown_model_names_the_known_models(client: TestClient) -> None:
    error = _error(client.post("/v1/jobs", json={"kind": "chat", "request": chat_request("nope")}))
    assert "gpt-4o-mini" in error["message"] and error["param"] == "request.model"


def test_malformed_json_and_oversized_bodies(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and _error(response)["code"] == "invalid_json"
    big = {"kind": "chat", "request": chat_request(prompt="x" * 100_000)}
    response = client.post("/v1/jobs", json=big)
    assert response.status_code == 413 and _error(response)["code"] == "payload_too_large"


def test_a_chunked_body_over_the_limit_gets_413_and_one_under_it_is_served(client: TestClient) -> None:
    def chunked(payload: dict[str, object]) -> Iterator[bytes]:
        text = json.dumps(payload).encode()
        for start in range(0, len(text), 4096):
            yield text[start : start + 4096]

    headers = {"content-type": "application/json"}
    big = {"kind": "chat", "request": chat_request(prompt="x" * 100_000)}
    response = client.post("/v1/jobs", content=chunked(big), headers=headers)
    assert response.status_code == 413 and _error(response)["code"] == "payload_too_large"
    small = {"kind": "chat", "request": chat_request()}
    accepted = client.post("/v1/jobs", content=chunked(small), headers=headers)
    assert accepted.status_code == 202, accepted.text


def test_missing_job_and_bad_filters(client: TestClient) -> None:
    assert _error(client.get("/v1/jobs/job_nope"))["code"] == "not_found"
    assert client.get("/v1/jobs?status=weird").status_code == 422
    assert client.get("/v1/jobs?limit=0").status_code == 422
    assert _error(client.get("/v1/nothing-here"))["code"] == "not_found"


def test_list_filters_and_cursor(client: TestClient) -> None:
    ids = [
        client.post("/v1/jobs", json={"kind": "embedding", "request": REQUESTS["embedding"]()}).json()["id"]
        for _ in range(3)
    ]
    page = client.get("/v1/jobs", params={"kind": "embedding", "limit": 2}).json()
    assert page["has_more"] is True and len(page["data"]) == 2
    rest = client.get("/v1/jobs", params={"kind": "embedding", "limit": 2, "after": page["last_id"]}).json()
    seen = [job["id"] for job in page["data"] + rest["data"]]
    assert set(ids) <= set(seen)
    assert all(job["kind"] == "embedding" for job in page["data"] + rest["data"])


def test_cancel_queued_job(client: TestClient) -> None:
    job = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request()}).json()
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and _error(again)["code"] == "conflict"


def test_idempotency_key_replays_and_refuses_a_different_body(client: TestClient) -> None:
    payload = {"kind": "chat", "request": chat_request()}
    first = client.post("/v1/jobs", json=payload, headers={"idempotency-key": "abc"})
    second = client.post("/v1/jobs", json=payload, headers={"idempotency-key": "abc"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    other = client.post(
        "/v1/jobs",
        json={"kind": "chat", "request": chat_request(prompt="other")},
        headers={"idempotency-key": "abc"},
    )
    assert other.status_code == 422 and _error(other)["code"] == "idempotency_key_reused"


def test_health_ready_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    schema = client.get("/openapi.json").json()
    assert "/v1/jobs" in schema["paths"] and "/v1/jobs/{job_id}/cancel" in schema["paths"]


def test_job_is_durable_when_redis_is_down(postgres_url: str) -> None:
    settings = load_settings(database_url=postgres_url, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings), headers=bearer(create_key(postgres_url))) as down:
        response = down.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
        assert response.status_code == 202
        job_id = response.json()["id"]
        assert down.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
        assert down.get("/readyz").status_code == 503
