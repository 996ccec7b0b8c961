"""What each answer means for a delivery, when the next attempt comes, and the event payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.storage.models import Job
from domain.webhooks.events import encode_payload, job_event_data
from domain.webhooks.repository import DeliveryAttempt
from workers.webhooks import Outcome, next_delivery_delay, outcome_of

pytestmark = pytest.mark.unit

SCHEDULE = (0.0, 5.0, 300.0, 1800.0)
RECORD = DeliveryAttempt(started_at=datetime(2025, 1, 1, tzinfo=UTC), duration_ms=3)


def no_jitter() -> float:
    return 0.0


def full_jitter() -> float:
    return 1.0


@pytest.mark.parametrize(
    ("status", "headers", "succeeded", "may_retry", "retry_after"),
    [
        (200, {}, True, False, None),
        (204, {}, True, False, None),
        (301, {"location": "https://elsewhere"}, False, True, None),
        (302, {}, False, True, None),
        (400, {}, False, True, None),
        (410, {}, False, False, None),
        (429, {"retry-after": "120"}, False, True, 120.0),
        (503, {"Retry-After": "7"}, False, True, 7.0),
        (500, {"retry-after": "120"}, False, True, None),
        (429, {}, False, True, None),
    ],
)
def test_answers_are_classified(
    status: int, headers: dict[str, str], succeeded: bool, may_retry: bool, retry_after: float | None
) -> None:
    outcome = outcome_of(status, headers, RECORD)
    assert (outcome.succeeded, outcome.may_retry, outcome.retry_after) == (succeeded, may_retry, retry_after)


def test_the_schedule_gives_the_delay_before_each_next_attempt() -> None:
    failed = Outcome(RECORD)
    delays = [next_delivery_delay(SCHEDULE, attempt, failed, no_jitter) for attempt in range(1, 5)]
    assert delays == [5.0, 300.0, 1800.0, None]  # four attempts in all: at once, then 5 s, 5 min, 30 min


def test_jitter_adds_at_most_ten_percent() -> None:
    assert next_delivery_delay(SCHEDULE, 2, Outcome(RECORD), full_jitter) == pytest.approx(330.0)


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    assert next_delivery_delay(SCHEDULE, 1, Outcome(RECORD, retry_after=60.0), no_jitter) == 60.0
    assert next_delivery_delay(SCHEDULE, 2, Outcome(RECORD, retry_after=1.0), no_jitter) == 300.0
    assert next_delivery_delay(SCHEDULE, 1, Outcome(RECORD, retry_after=10**9), no_jitter) == 24 * 3600.0
    assert next_delivery_delay(SCHEDULE, 4, Outcome(RECORD, retry_after=1.0), no_jitter) is None


def test_success_and_gone_stop() -> None:
    assert next_delivery_delay(SCHEDULE, 1, Outcome(RECORD, succeeded=True, may_retry=False)) is None
    assert next_delivery_delay(SCHEDULE, 1, Outcome(RECORD, may_retry=False)) is None


def _job(**values: Any) -> Job:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": "job_1",
        "tenant_id": "default",
        "kind": "chat",
        "model": "gpt-4o-mini",
        "tier": "standard",
        "status": "succeeded",
        "priority": 0,
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        "result": {"choices": [{"message": {"content": "hello"}}]},
        "usage": {"total_tokens": 3},
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "images": 0,
        "estimated_tokens": 10,
        "limiter_wait_ms": 0,
        "attempts": 1,
        "webhook_url": "https://example.com/hook",
        "created_at": now,
        "finished_at": now,
    }
    fields.update(values)
    return Job(**fields)


def test_the_payload_is_the_event_envelope_around_the_job() -> None:
    data = job_event_data(_job(), max_result_bytes=10_000)
    text = encode_payload(event_id="evt_1", event_type="job.succeeded", created_at=1_700_000_000, data=data)
    event = json.loads(text)
    assert set(event) == {"id", "object", "type", "created_at", "data"}
    assert (event["id"], event["object"], event["type"]) == ("evt_1", "event", "job.succeeded")
    assert event["data"]["id"] == "job_1" and event["data"]["status"] == "succeeded"
    assert event["data"]["result"] == {"choices": [{"message": {"content": "hello"}}]}
    assert event["data"]["result_omitted"] is False and event["data"]["request_omitted"] is False


def test_a_result_over_the_limit_is_left_out_and_flagged() -> None:
    big = {"data": [{"b64_json": "A" * 5000}]}
    data = job_event_data(_job(result=big), max_result_bytes=1000)
    assert data["result"] is None and data["result_omitted"] is True
    assert data["request"] is not None and data["request_omitted"] is False
