"""User work cannot freeze the API: with every shared worker thread held by user work, ``/healthz``
still answers, and so does authentication (key lookups on PostgreSQL run on threads of their own).
Webhook hosts are resolved on the event loop, with a cap on distinct hosts per request."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import chat_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration

ANSWER_WITHIN = 10.0  # seconds; a frozen route never answers, so any bound tells the two apart


@pytest.fixture
def client(postgres_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = load_settings(database_url=postgres_url, redis_url=redis_url)
    key = create_key(postgres_url, f"threads-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings), headers=bearer(key)) as test_client:
        yield test_client


def _answer(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or None when it did not return in time."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(ANSWER_WITHIN)
    return result[0] if result else None


def test_health_and_auth_answer_while_user_work_holds_every_shared_thread(client: TestClient) -> None:
    released = threading.Event()

    async def shared_threads() -> int:
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    total = client.portal.call(shared_threads)
    holders = [client.portal.start_task_soon(anyio.to_thread.run_sync, released.wait) for _ in range(total)]
    try:
        health = _answer(lambda: client.get("/healthz"))
        assert health is not None and health.status_code == 200
        refused = _answer(lambda: client.get("/v1/jobs", headers={"Authorization": "Bearer bk_x_nope"}))
        assert refused is not None and refused.status_code == 401
        looked_up = _answer(lambda: client.post("/v1/jobs", json={"kind": "chat"}))  # valid key, bad body
        assert looked_up is not None and looked_up.status_code == 422
    finally:
        released.set()
        for holder in holders:
            holder.result(timeout=ANSWER_WITHIN)
    assert client.get("/v1/jobs").status_code == 200


def test_a_bulk_request_names_at_most_sixteen_webhook_hosts(client: TestClient) -> None:
    jobs = [
        {"kind": "chat", "request": chat_request(), "webhook_url": f"https://h{i}.hooks.invalid/x"}
        for i in range(20)
    ]
    response = client.post("/v1/jobs/bulk", json={"jobs": jobs})
    assert response.status_code == 202, response.text
    codes = [item["error"]["code"] for item in response.json()["data"]]
    assert codes[:16] == ["invalid_webhook_url"] * 16  # .invalid never resolves
    assert codes[16:] == ["too_many_webhook_hosts"] * 4
