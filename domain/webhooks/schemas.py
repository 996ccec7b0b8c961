"""The HTTP contract of the webhook delivery log: ``GET /v1/jobs/{id}/webhook-deliveries`` and redelivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from domain.storage.models import WebhookAttempt, WebhookDelivery
from domain.webhooks.repository import DeliveryStatus


class WebhookAttemptOut(BaseModel):
    """One HTTP attempt."""

    number: int = Field(description="1 for the first attempt; counts on across redeliveries")
    started_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="the receiver's HTTP status; null when it never answered")
    response_body: str | None = Field(description="the first 1 KB of the receiver's answer")
    error: str | None = Field(description="why the attempt did not count as delivered")


class WebhookDeliveryOut(BaseModel):
    """One event on its way to the job's webhook URL, with every attempt."""

    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_id: str = Field(description="the event's id, sent as webhook-id on every attempt")
    event_type: str
    url: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="when the next attempt is due, while pending")
    delivered_at: datetime | None
    created_at: datetime
    attempts: list[WebhookAttemptOut]


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDeliveryOut]


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        url=delivery.url,
        status=DeliveryStatus(delivery.status),
        attempt_count=delivery.attempt_count,
        next_attempt_at=_utc(delivery.next_attempt_at) if delivery.status == DeliveryStatus.pending else None,
        delivered_at=_utc(delivery.delivered_at),
        created_at=_utc(delivery.created_at) or delivery.created_at,
        attempts=[
            WebhookAttemptOut(
                number=attempt.number,
                started_at=_utc(attempt.started_at) or attempt.started_at,
                duration_ms=attempt.duration_ms,
                status_code=attempt.status_code,
                response_body=attempt.response_excerpt,
                error=attempt.error,
            )
            for attempt in attempts
        ],
    )
