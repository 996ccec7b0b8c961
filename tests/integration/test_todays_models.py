"""Today's models and dated snapshots are accepted by the API with the default tiers and land in their
base model's tier; other unknown models keep 422 unknown_model. On PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import chat_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration
ROUTED = {
    "gpt-5.1": "premium",
    "gpt-5.1-chat-latest": "premium",
    "o1": "premium",
    "gpt-4o-2024-08-06": "premium",
    "gpt-5-nano": "standard",
    "o4-mini": "standard",
    "o3-mini": "standard",
    "gpt-4.1-mini-2025-04-14": "standard",
}


@pytest.fixture(params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[TestClient]:
    database_url = request.getfixturevalue(f"{request.param}_url")
    settings = load_settings(database_url=database_url, redis_url=redis_url)
    key = create_key(database_url, tenant=f"models-{request.param}")
    with TestClient(create_app(settings), headers=bearer(key)) as test_client:
        yield test_client


def test_todays_models_and_snapshots_are_accepted_in_their_tier(client: TestClient) -> None:
    for model, tier in ROUTED.items():
        response = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request(model)})
        assert response.status_code == 202, (model, response.text)
        job = response.json()
        assert job["tier"] == tier and job["model"] == model
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


@pytest.mark.parametrize("model", ["gpt-4o-typo", "grok-4", "gpt-4o-2024-08-06-extra"])
def test_other_unknown_models_keep_a_clear_422(client: TestClient, model: str) -> None:
    response = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request(model)})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_model"
