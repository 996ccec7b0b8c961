"""Every SQL statement on webhook deliveries and their attempts.

A delivery is one event on its way to one URL. Its retry schedule lives in the database: after a failed
attempt ``next_attempt_at`` is set to the next slot, and a periodic poll (``due_for_dispatch``) sends
the ids that are due. No retry waits in the broker, so none comes near its visibility timeout, and a
restart loses nothing.

An attempt starts with ``claim_delivery``, a conditional UPDATE that takes a lease (``lease_expires_at``)
and counts the attempt; ``finish_attempt`` writes the outcome only while ``attempt_count`` still
equals the claimed number. A worker that dies mid-attempt leaves a lease that expires, and the
delivery becomes due again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from domain.errors import Conflict, NotFound
from domain.ids import new_id
from domain.jobs.attempts import MAX_ERROR_CHARS
from domain.leases import lease
from domain.leases.tables import DELIVERY_LEASES
from domain.storage.dialect import dialect_of
from domain.storage.models import WebhookAttempt, WebhookDelivery, utcnow


class DeliveryStatus(StrEnum):
    """Where a delivery is."""

    pending = "pending"
    """Waiting for its next attempt (``next_attempt_at``), or in one (``lease_expires_at``)."""
    succeeded = "succeeded"
    """The receiver answered 2xx."""
    failed = "failed"
    """The schedule ran out, the receiver answered 410 Gone, or the URL can never be called."""


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """What an attempt holds: the exact payload to send and its attempt numbers."""

    delivery_id: str
    event_id: str
    url: str
    payload: str
    attempt: int
    """The attempt's number over the delivery's life (the log's ``number``)."""
    round_attempt: int
    """The attempt's number since the delivery was (re)started; indexes the retry schedule."""


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """The outcome of one delivery attempt, as the log keeps it."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None


def create_delivery(
    session: Session,
    *,
    tenant_id: str,
    event_id: str,
    event_type: str,
    subject_id: str,
    url: str,
    payload: str,
    first_delay: float = 0.0,
    now: datetime | None = None,
) -> WebhookDelivery:
    """Insert a pending delivery, due ``first_delay`` seconds from now. The caller sends its id right
    after committing; should that send fail, the next poll sends it (it is not marked dispatched)."""
    now = now or utcnow()
    delivery = WebhookDelivery(
        id=new_id("whd"),
        tenant_id=tenant_id,
        event_id=event_id,
        event_type=event_type,
        subject_id=subject_id,
        url=url,
        payload=payload,
        status=DeliveryStatus.pending.value,
        attempt_count=0,
        round_attempts=0,
        next_attempt_at=now + timedelta(seconds=first_delay),
        dispatched_at=None,
        created_at=now,
        updated_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery


def _claimable(now: datetime) -> ColumnElement[bool]:
    return and_(
        WebhookDelivery.status == DeliveryStatus.pending.value,
        WebhookDelivery.next_attempt_at <= now,
        lease.is_free(DELIVERY_LEASES, now),
    )


def claim_delivery(
    session: Session, delivery_id: str, *, lease_seconds: float, now: datetime | None = None
) -> DeliveryClaim | None:
    """Start an attempt if the delivery is due and no attempt holds it; None otherwise."""
    now = now or utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, _claimable(now))
        .execution_options(synchronize_session=False)
        .values(
            **lease.taken(DELIVERY_LEASES, lease.until(now, lease_seconds)),
            attempt_count=WebhookDelivery.attempt_count + 1,
            round_attempts=WebhookDelivery.round_attempts + 1,
            updated_at=now,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    row = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    assert row is not None
    return DeliveryClaim(
        delivery_id=row.id,
        event_id=row.event_id,
        url=row.url,
        payload=row.payload,
        attempt=row.attempt_count,
        round_attempt=row.round_attempts,
    )


def finish_attempt(
    session: Session,
    claim: DeliveryClaim,
    record: DeliveryAttempt,
    *,
    succeeded: bool,
    next_attempt_at: datetime | None,
    now: datetime | None = None,
) -> bool:
    """Log the attempt and move the delivery on: succeeded, due again at ``next_attempt_at``, or failed
    when there is none. False when the claim was no longer current (the attempt is still logged)."""
    now = now or utcnow()
    error = record.error[:MAX_ERROR_CHARS] if record.error else None
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id,
            number=claim.attempt,
            started_at=record.started_at,
            duration_ms=record.duration_ms,
            status_code=record.status_code,
            response_excerpt=record.response_excerpt,
            error=error,
        )
    )
    if succeeded:
        status, next_at = DeliveryStatus.succeeded, None
    elif next_attempt_at is not None:
        status, next_at = DeliveryStatus.pending, next_attempt_at
    else:
        status, next_at = DeliveryStatus.failed, None
    done = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claim.delivery_id,
            WebhookDelivery.attempt_count == claim.attempt,
            WebhookDelivery.status == DeliveryStatus.pending.value,
        )
        .values(
            status=status.value,
            next_attempt_at=next_at,
            **lease.released(DELIVERY_LEASES),
            dispatched_at=None,
            last_status_code=record.status_code,
            last_error=error,
            delivered_at=now if succeeded else None,
            updated_at=now,
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def due_for_dispatch(
    session: Session, *, resend_before: datetime, limit: int, now: datetime | None = None
) -> list[str]:
    """Ids of deliveries that are due, not held by an attempt, and not sent since ``resend_before``
    (their message may be lost): oldest first, marked dispatched now."""
    now = now or utcnow()
    not_sent = or_(WebhookDelivery.dispatched_at.is_(None), WebhookDelivery.dispatched_at < resend_before)
    query = (
        select(WebhookDelivery.id)
        .where(_claimable(now), not_sent)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    query = dialect_of(session).lock_skipping(query)
    ids = list(session.scalars(query))
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(dispatched_at=now))
    return ids


def mark_dispatched(session: Session, delivery_ids: list[str], when: datetime | None) -> None:
    """Record that ids were sent to the broker (``None``: sending failed, the next poll sends them)."""
    if delivery_ids:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)).values(dispatched_at=when)
        )


def list_deliveries(session: Session, *, tenant_id: str, subject_id: str) -> list[WebhookDelivery]:
    """A job's (or batch's) deliveries, oldest first."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.subject_id == subject_id)
        .order_by(WebhookDelivery.id)
    )
    return list(session.scalars(query))


def attempts_by_delivery(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    """Each delivery's attempts, in order."""
    found: dict[str, list[WebhookAttempt]] = defaultdict(list)
    if delivery_ids:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        )
        for attempt in session.scalars(query):
            found[attempt.delivery_id].append(attempt)
    return found


def get_delivery(session: Session, *, tenant_id: str, subject_id: str, delivery_id: str) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.tenant_id != tenant_id or delivery.subject_id != subject_id:
        raise NotFound(f"no webhook delivery {delivery_id!r}", param="delivery_id")
    return delivery


def redeliver(
    session: Session, *, tenant_id: str, subject_id: str, delivery_id: str, now: datetime | None = None
) -> WebhookDelivery:
    """Send the same event (same id, same payload) again, at once, with a fresh retry schedule.
    Refused while an attempt is in flight. The caller sends the id after committing."""
    now = now or utcnow()
    delivery = get_delivery(session, tenant_id=tenant_id, subject_id=subject_id, delivery_id=delivery_id)
    idle = lease.is_free(DELIVERY_LEASES, now)
    done = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, idle)
        .execution_options(synchronize_session=False)
        .values(
            status=DeliveryStatus.pending.value,
            round_attempts=0,
            next_attempt_at=now,
            **lease.released(DELIVERY_LEASES),
            dispatched_at=now,
            updated_at=now,
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("an attempt of this delivery is in progress; try again shortly", param="delivery_id")
    session.refresh(delivery)
    return delivery
