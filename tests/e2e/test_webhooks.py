"""Signed webhooks through real processes: the API, a Celery worker serving the webhook queue, beat
polling for due retries, and a receiver process on an allow-listed loopback address."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from testbed.processes import Process, batchery, free_port, wait_for, wait_http
from tests.factories import chat_request
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

SECRET_NEW = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_OLD = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdHM="
SECRETS = (SECRET_NEW, SECRET_OLD)


@dataclass
class Setup:
    stack: Stack
    receiver_url: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("webhooks")
    env = {
        "BATCHERY_WEBHOOK_SECRETS": " ".join(SECRETS),
        "BATCHERY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "BATCHERY_WEBHOOK_RETRY_SCHEDULE": "0,1s,1s",  # compressed from 0, 5 s, 5 min, ...
        "BATCHERY_WEBHOOK_POLL_INTERVAL_SECONDS": "0.25",
        "BATCHERY_WEBHOOK_TIMEOUT_SECONDS": "60",
    }
    port = free_port()
    with running_stack(tmp, postgres_url, redis_url, extra_env=env) as stack, ExitStack() as stop:
        argv = [sys.executable, "-m", "tests.support.webhook_receiver", "--port", str(port)]
        argv += ["--script", "/flaky=500,500,200", "--script", "/hold=hold"]
        receiver = Process("receiver", argv, stack.env, tmp)
        stop.callback(receiver.stop)
        beat = Process("beat", batchery("beat", "--schedule", str(tmp / "beat-schedule")), stack.env, tmp)
        stop.callback(beat.stop)
        stack.processes.update(receiver=receiver, beat=beat)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_received", receiver)
        yield Setup(stack, url)


def _received(setup: Setup, path: str) -> list[dict[str, Any]]:
    items = httpx.get(f"{setup.receiver_url}/_received", timeout=10).json()
    return [item for item in items if item["path"] == path]


def _submit(api: httpx.Client, webhook_url: str | None) -> str:
    body: dict[str, Any] = {"kind": "chat", "request": chat_request()}
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _deliveries(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/v1/jobs/{job_id}/webhook-deliveries").json()["data"])


def _wait_delivered(setup: Setup, api: httpx.Client, job_ids: list[str], timeout: float = 30.0) -> None:
    def all_done() -> bool:
        return all([d["status"] for d in _deliveries(api, job_id)] == ["succeeded"] for job_id in job_ids)

    try:
        wait_for(all_done, timeout=timeout, what="webhook deliveries")
    except TimeoutError:
        logs = "\n".join(f"--- {n}\n{p.log_tail(20)}" for n, p in setup.stack.processes.items())
        raise AssertionError(logs) from None


def _verify(item: dict[str, Any]) -> dict[str, Any]:
    """The event, after checking that every configured secret's signature verifies."""
    assert len(item["headers"]["webhook-signature"].split(" ")) == len(SECRETS)
    events = [Webhook(secret).verify(item["body"], item["headers"]) for secret in SECRETS]
    assert events[0] == events[1]
    return dict(events[0])


def test_each_job_gets_exactly_one_signed_delivery(setup: Setup) -> None:
    with setup.stack.api() as api:
        ids = [_submit(api, f"{setup.receiver_url}/ok") for _ in range(4)]
        jobs = setup.stack.wait_jobs(api, ids)
        _wait_delivered(setup, api, ids)
    received = _received(setup, "/ok")
    events = [_verify(item) for item in received]
    assert sorted(event["data"]["id"] for event in events) == sorted(ids)  # one each, no duplicate
    for job, event in zip(sorted(jobs, key=lambda j: j["id"]), sorted(events, key=lambda e: e["data"]["id"])):
        assert event["object"] == "event" and event["type"] == "job.succeeded"
        assert event["id"].startswith("evt_") and isinstance(event["created_at"], int)
        data = dict(event["data"])
        assert data.pop("result_omitted") is False and data.pop("request_omitted") is False
        assert data == job  # the job exactly as GET returns it
    assert len({item["headers"]["webhook-id"] for item in received}) == len(ids)


def test_a_failing_receiver_gets_three_attempts_with_one_webhook_id(setup: Setup) -> None:
    with setup.stack.api() as api:
        job_id = _submit(api, f"{setup.receiver_url}/flaky")
        [job] = setup.stack.wait_jobs(api, [job_id])
        _wait_delivered(setup, api, [job_id])
        [delivery] = _deliveries(api, job_id)
        assert api.get(f"/v1/jobs/{job_id}").json()["status"] == job["status"] == "succeeded"
    received = _received(setup, "/flaky")
    assert len(received) == 3
    assert {item["headers"]["webhook-id"] for item in received} == {delivery["event_id"]}
    stamps = [int(item["headers"]["webhook-timestamp"]) for item in received]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # a new timestamp on every attempt
    assert len({item["headers"]["webhook-signature"] for item in received}) == 3
    for item in received:
        assert _verify(item)["data"]["id"] == job_id
    attempts = delivery["attempts"]
    assert [(a["number"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert attempts[0]["response_body"] == "receiver error" and attempts[0]["error"]


def test_receivers_that_hang_do_not_hold_up_the_tier(setup: Setup) -> None:
    with setup.stack.api() as api:
        held = [_submit(api, f"{setup.receiver_url}/hold") for _ in range(8)]  # the worker has 8 threads
        setup.stack.wait_jobs(api, held)
        wait_for(lambda: len(_received(setup, "/hold")) == 8, timeout=30, what="8 deliveries in flight")
        plain = [_submit(api, None) for _ in range(8)]
        assert {job["status"] for job in setup.stack.wait_jobs(api, plain, timeout=30)} == {"succeeded"}
        assert all(_deliveries(api, job_id)[0]["status"] == "pending" for job_id in held)  # still held
        httpx.post(f"{setup.receiver_url}/_release", timeout=10)
        _wait_delivered(setup, api, held)
