"""``stream`` at submission: embeddings and images, which cannot stream, are refused with 422
``streaming_unsupported`` naming ``request.stream`` (nothing stored or queued); chat, vision and
Responses jobs are accepted and their record says the stream is aggregated; a ``stream`` that is not a
boolean is refused. On PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import REQUESTS
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration
KINDS = ("chat", "vision", "embedding", "image", "response")
STREAMING = ["chat", "vision", "response"]


@pytest.fixture(params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[TestClient]:
    database_url = request.getfixturevalue(f"{request.param}_url")
    settings = load_settings(database_url=database_url, redis_url=redis_url)
    key = create_key(database_url, tenant=f"streaming-{request.param}")
    with TestClient(create_app(settings), headers=bearer(key)) as test_client:
        yield test_client


@pytest.mark.parametrize("kind", ["embedding", "image"])
@pytest.mark.parametrize("stream", [True, "true", 1])
def test_stream_is_refused_with_a_clear_code(client: TestClient, kind: str, stream: object) -> None:
    response = client.post("/v1/jobs", json={"kind": kind, "request": {**REQUESTS[kind](), "stream": stream}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "streaming_unsupported" and error["param"] == "request.stream"
    assert "stream" in error["message"]
    assert client.get("/v1/jobs").json()["data"] == []  # nothing stored for this tenant


@pytest.mark.parametrize("kind", KINDS)
def test_stream_false_is_accepted(client: TestClient, kind: str) -> None:
    response = client.post("/v1/jobs", json={"kind": kind, "request": {**REQUESTS[kind](), "stream": False}})
    assert response.status_code == 202, response.text
    assert client.post(f"/v1/jobs/{response.json()['id']}/cancel").status_code == 200


@pytest.mark.parametrize("kind", STREAMING)
def test_a_stream_is_accepted_where_the_kind_can_stream(client: TestClient, kind: str) -> None:
    response = client.post("/v1/jobs", json={"kind": kind, "request": {**REQUESTS[kind](), "stream": True}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["stream"] == "aggregated" and job["request"]["stream"] is True
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    plain = client.post("/v1/jobs", json={"kind": kind, "request": REQUESTS[kind]()}).json()
    assert plain["stream"] is None
    assert client.post(f"/v1/jobs/{plain['id']}/cancel").status_code == 200


@pytest.mark.parametrize("kind", STREAMING)
@pytest.mark.parametrize("stream", ["true", 1])
def test_a_stream_that_is_not_a_boolean_is_refused(client: TestClient, kind: str, stream: object) -> None:
    response = client.post("/v1/jobs", json={"kind": kind, "request": {**REQUESTS[kind](), "stream": stream}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "request.stream"
