"""The webhook delivery table against real SQLite and real PostgreSQL: the outbox, claims and leases,
a retry schedule kept in the database, the due-poll, and redelivery."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.settings import load_settings
from domain.errors import Conflict, NotFound
from domain.jobs import repository
from domain.storage.models import WebhookDelivery, utcnow
from domain.storage.sessions import session_scope
from domain.webhooks import events
from domain.webhooks import repository as repo
from domain.webhooks.repository import DeliveryAttempt, DeliveryStatus
from tests.factories import new_job

pytestmark = pytest.mark.integration

URL = "https://receiver.example/hook"


def _record(sessions: sessionmaker[Session], subject: str = "job_x", first_delay: float = 0.0) -> str:
    with session_scope(sessions) as session:
        return events.record_event(
            session,
            tenant_id="default",
            event_type="job.succeeded",
            subject_id=subject,
            data={"id": subject},
            url=URL,
            first_delay=first_delay,
        )


def _due(session: Session, delivery_id: str, **when: object) -> bool:
    """Whether the poll would send ``delivery_id`` (the PostgreSQL database is shared by the session's
    tests, so other deliveries may be due too)."""
    return delivery_id in repo.due_for_dispatch(session, limit=10_000, **when)  # type: ignore[arg-type]


def _attempt(status: int | None, error: str | None = None) -> DeliveryAttempt:
    return DeliveryAttempt(started_at=utcnow(), duration_ms=12, status_code=status, error=error)


def test_an_event_becomes_a_pending_delivery_due_at_once(sessions: sessionmaker[Session]) -> None:
    delivery_id = _record(sessions)
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.status == DeliveryStatus.pending.value
        payload = json.loads(delivery.payload)
        assert payload["id"] == delivery.event_id and payload["id"].startswith("evt_")
        assert payload["type"] == "job.succeeded" and payload["data"] == {"id": "job_x"}
        assert _due(session, delivery_id, resend_before=utcnow())
        assert not _due(session, delivery_id, resend_before=utcnow() - timedelta(minutes=1))


def test_a_batch_event_uses_the_same_machinery(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        delivery_id = events.record_event(
            session,
            tenant_id="default",
            event_type="batch.completed",
            subject_id="batch_1",
            data={"id": "batch_1", "object": "batch"},
            url=URL,
        )
        assert repo.list_deliveries(session, tenant_id="default", subject_id="batch_1")[0].id == delivery_id
    with pytest.raises(ValueError, match="unknown event type"):
        _record_type(sessions, "batch.exploded")


def _record_type(sessions: sessionmaker[Session], event_type: str) -> None:
    with session_scope(sessions) as session:
        events.record_event(
            session, tenant_id="default", event_type=event_type, subject_id="b", data={}, url=URL
        )


def test_one_attempt_at_a_time_then_the_schedule_from_the_database(sessions: sessionmaker[Session]) -> None:
    delivery_id = _record(sessions)
    with session_scope(sessions) as session:
        claim = repo.claim_delivery(session, delivery_id, lease_seconds=60)
        assert claim is not None and (claim.attempt, claim.round_attempt) == (1, 1)
        assert repo.claim_delivery(session, delivery_id, lease_seconds=60) is None  # held by the lease
        assert not _due(session, delivery_id, resend_before=utcnow())
    retry_at = utcnow() + timedelta(seconds=300)
    with session_scope(sessions) as session:
        assert repo.finish_attempt(session, claim, _attempt(500), succeeded=False, next_attempt_at=retry_at)
    with session_scope(sessions) as session:
        assert repo.claim_delivery(session, delivery_id, lease_seconds=60) is None  # not due yet
        assert not _due(session, delivery_id, resend_before=utcnow())
        later = retry_at + timedelta(seconds=1)
        assert _due(session, delivery_id, resend_before=later, now=later)
        second = repo.claim_delivery(session, delivery_id, lease_seconds=60, now=later)
        assert second is not None and second.attempt == 2 and second.event_id == claim.event_id
        assert second.payload == claim.payload
        assert repo.finish_attempt(session, second, _attempt(204), succeeded=True, next_attempt_at=None)
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.status == DeliveryStatus.succeeded.value
        assert delivery.next_attempt_at is None and delivery.delivered_at is not None
        log = repo.attempts_by_delivery(session, [delivery_id])[delivery_id]
        assert [(a.number, a.status_code) for a in log] == [(1, 500), (2, 204)]


def test_the_schedule_running_out_fails_the_delivery(sessions: sessionmaker[Session]) -> None:
    delivery_id = _record(sessions)
    with session_scope(sessions) as session:
        claim = repo.claim_delivery(session, delivery_id, lease_seconds=60)
        assert claim is not None
        repo.finish_attempt(session, claim, _attempt(410, "gone"), succeeded=False, next_attempt_at=None)
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.status == DeliveryStatus.failed.value
        assert delivery.last_status_code == 410 and delivery.last_error == "gone"
        assert not _due(session, delivery_id, resend_before=utcnow())


def test_an_expired_lease_makes_the_delivery_due_again(sessions: sessionmaker[Session]) -> None:
    delivery_id = _record(sessions)
    with session_scope(sessions) as session:
        lost = repo.claim_delivery(session, delivery_id, lease_seconds=30)
        assert lost is not None
    later = utcnow() + timedelta(seconds=31)
    with session_scope(sessions) as session:
        assert _due(session, delivery_id, resend_before=later, now=later)
        again = repo.claim_delivery(session, delivery_id, lease_seconds=30, now=later)
        assert again is not None and again.attempt == 2
        # the lost attempt's late write is logged but moves nothing
        assert not repo.finish_attempt(session, lost, _attempt(200), succeeded=True, next_attempt_at=None)
        delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
        assert delivery is not None and delivery.status == DeliveryStatus.pending.value


def test_a_first_delay_waits_for_the_poll(sessions: sessionmaker[Session]) -> None:
    delivery_id = _record(sessions, first_delay=60)
    with session_scope(sessions) as session:
        assert repo.claim_delivery(session, delivery_id, lease_seconds=30) is None
        later = utcnow() + timedelta(seconds=61)
        assert _due(session, delivery_id, resend_before=later, now=later)


def test_redelivery_sends_the_same_event_again(sessions: sessionmaker[Session]) -> None:
    delivery_id = _record(sessions, subject="job_r")
    with session_scope(sessions) as session:
        claim = repo.claim_delivery(session, delivery_id, lease_seconds=60)
        assert claim is not None
        with pytest.raises(Conflict):
            repo.redeliver(session, tenant_id="default", subject_id="job_r", delivery_id=delivery_id)
        repo.finish_attempt(session, claim, _attempt(200), succeeded=True, next_attempt_at=None)
    with session_scope(sessions) as session:
        delivery = repo.redeliver(session, tenant_id="default", subject_id="job_r", delivery_id=delivery_id)
        assert delivery.status == DeliveryStatus.pending.value and delivery.round_attempts == 0
    with session_scope(sessions) as session:
        again = repo.claim_delivery(session, delivery_id, lease_seconds=60)
        assert again is not None and again.event_id == claim.event_id and again.payload == claim.payload
        assert (again.attempt, again.round_attempt) == (2, 1)
        for tenant, subject in (("other", "job_r"), ("default", "job_other")):
            with pytest.raises(NotFound):
                repo.redeliver(session, tenant_id=tenant, subject_id=subject, delivery_id=delivery_id)


def test_only_a_terminal_job_with_a_webhook_url_records_an_event(sessions: sessionmaker[Session]) -> None:
    settings = load_settings(webhook_max_result_bytes=50)
    with session_scope(sessions) as session:
        plain, _ = repository.create_job(session, new_job())
        hooked, _ = repository.create_job(session, new_job(webhook_url=URL))
        assert events.record_job_event(session, hooked.id, settings) is None  # still queued
        repository.cancel_job(session, plain.id, tenant_id="default")
        repository.cancel_job(session, hooked.id, tenant_id="default")
        assert events.record_job_event(session, plain.id, settings) is None
        delivery_id = events.record_job_event(session, hooked.id, settings)
        assert delivery_id is not None
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.url == URL and delivery.subject_id == hooked.id
        event = json.loads(delivery.payload)
    assert event["type"] == "job.cancelled" and event["data"]["id"] == hooked.id
    assert event["data"]["status"] == "cancelled" and event["data"]["request"] is None
    assert event["data"]["request_omitted"] is True  # the request is over the 50-byte limit
