"""The delivery log over HTTP: cancelling a queued job records its event in the same transaction and
sends the delivery id to the webhook queue; the log lists it; redelivery sends the same event again."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from infra.celery_conf import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE
from tests.factories import chat_request

pytestmark = pytest.mark.integration

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def client(sqlite_url: str, redis_url: str) -> Iterator[TestClient]:
    redis.Redis.from_url(redis_url).delete(WEBHOOK_QUEUE)
    settings = load_settings(
        database_url=sqlite_url,
        redis_url=redis_url,
        auth_disabled=True,
        webhook_allowed_networks=["127.0.0.1/32"],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _sent(redis_url: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message on the webhook queue."""
    found = []
    for raw in redis.Redis.from_url(redis_url).lrange(WEBHOOK_QUEUE, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args))
    return found


def _submit(client: TestClient, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request(), **extra})
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_cancelling_a_queued_job_records_and_sends_its_event(client: TestClient, redis_url: str) -> None:
    job = _submit(client, webhook_url=HOOK)
    assert client.get(f"/v1/jobs/{job['id']}/webhook-deliveries").json() == {"object": "list", "data": []}
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    listed = client.get(f"/v1/jobs/{job['id']}/webhook-deliveries").json()["data"]
    assert len(listed) == 1
    delivery = listed[0]
    assert delivery["object"] == "webhook_delivery" and delivery["event_type"] == "job.cancelled"
    assert delivery["status"] == "pending" and delivery["url"] == HOOK
    assert delivery["event_id"].startswith("evt_") and delivery["attempts"] == []
    assert _sent(redis_url) == [(DELIVER_WEBHOOK_TASK, [delivery["id"]])]  # the id only, nothing secret
    one = client.get(f"/v1/jobs/{job['id']}/webhook-deliveries/{delivery['id']}").json()
    assert one["id"] == delivery["id"]


def test_redelivery_sends_the_same_delivery_again(client: TestClient, redis_url: str) -> None:
    job = _submit(client, webhook_url=HOOK)
    client.post(f"/v1/jobs/{job['id']}/cancel")
    [delivery] = client.get(f"/v1/jobs/{job['id']}/webhook-deliveries").json()["data"]
    again = client.post(f"/v1/jobs/{job['id']}/webhook-deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 202, again.text
    assert again.json()["event_id"] == delivery["event_id"] and again.json()["status"] == "pending"
    assert [args for _, args in _sent(redis_url)] == [[delivery["id"]], [delivery["id"]]]


def test_a_job_without_a_webhook_records_nothing(client: TestClient, redis_url: str) -> None:
    job = _submit(client)
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert client.get(f"/v1/jobs/{job['id']}/webhook-deliveries").json()["data"] == []
    assert _sent(redis_url) == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/job_missing/webhook-deliveries",
        "/v1/jobs/job_missing/webhook-deliveries/whd_missing",
    ],
)
def test_unknown_objects_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_redelivering_an_unknown_delivery_is_404(client: TestClient) -> None:
    job = _submit(client, webhook_url=HOOK)
    response = client.post(f"/v1/jobs/{job['id']}/webhook-deliveries/whd_nope/redeliver")
    assert response.status_code == 404 and response.json()["error"]["param"] == "delivery_id"
