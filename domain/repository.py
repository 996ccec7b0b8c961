"""Every SQL statement batchery runs on jobs: create, read, list, cancel, and the worker's
claim / lease / fenced completion.

Fencing: a claim writes a fresh ``lease_owner`` token. Every later write by that worker names the
token in its WHERE clause, so a worker whose lease expired (and whose job was claimed again) can
no longer change the row.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.costing import UsageColumns
from domain.errors import Conflict, IdempotencyKeyReused, NotFound
from domain.ids import job_id
from domain.models import DEFAULT_TENANT, Job, utcnow
from domain.redaction import redact, redact_value
from domain.status import JobStatus


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job, ready to store."""

    kind: str
    model: str
    tier: str
    request: dict[str, Any]
    estimated_tokens: int = 0
    priority: int = 0
    metadata: dict[str, str] | None = None
    webhook_url: str | None = None
    tenant_id: str = DEFAULT_TENANT
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker holds after claiming a job: the fencing token and the attempt it started."""

    job_id: str
    token: str
    attempt: int
    kind: str
    model: str
    tier: str
    request: dict[str, Any]
    estimated_tokens: int


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(session: Session, new: NewJob, *, request_fingerprint: str | None = None) -> tuple[Job, bool]:
    """Insert a queued job. Returns (job, created); an idempotent repeat returns the original."""
    if new.idempotency_key is not None:
        existing = _by_idempotency_key(session, new.tenant_id, new.idempotency_key)
        if existing is not None:
            return _same_request(existing, request_fingerprint), False
    job = Job(
        id=job_id(),
        tenant_id=new.tenant_id,
        kind=new.kind,
        model=new.model,
        tier=new.tier,
        status=JobStatus.queued.value,
        priority=new.priority,
        request=new.request,
        estimated_tokens=new.estimated_tokens,
        meta=new.metadata,
        webhook_url=new.webhook_url,
        idempotency_key=new.idempotency_key,
        request_hash=request_fingerprint,
        created_at=utcnow(),
    )
    session.add(job)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        if new.idempotency_key is None:
            raise
        existing = _by_idempotency_key(session, new.tenant_id, new.idempotency_key)
        if existing is None:
            raise Conflict("a request with this Idempotency-Key is in progress") from exc
        return _same_request(existing, request_fingerprint), False
    return job, True


def _by_idempotency_key(session: Session, tenant_id: str, key: str) -> Job | None:
    return session.scalars(
        select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
    ).one_or_none()


def _same_request(existing: Job, fingerprint: str | None) -> Job:
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    return existing


def get_job(session: Session, job_id_: str, *, tenant_id: str = DEFAULT_TENANT) -> Job:
    job = session.get(Job, job_id_)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"no job {job_id_!r}", param="id")
    return job


def list_jobs(
    session: Session,
    *,
    tenant_id: str = DEFAULT_TENANT,
    status: str | None = None,
    kind: str | None = None,
    tier: str | None = None,
    after: str | None = None,
    limit: int = 20,
) -> tuple[list[Job], bool]:
    """Newest first; ``after`` is the last id of the previous page. Returns (jobs, has_more)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if tier is not None:
        query = query.where(Job.tier == tier)
    if after is not None:
        query = query.where(Job.id < after)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def cancel_job(session: Session, job_id_: str, *, tenant_id: str = DEFAULT_TENANT) -> Job:
    """A queued job is cancelled at once; a running one when its current call returns."""
    job = get_job(session, job_id_, tenant_id=tenant_id)
    now = utcnow()
    if job.status == JobStatus.queued.value:
        done = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status == JobStatus.queued.value)
            .values(status=JobStatus.cancelled.value, finished_at=now, cancel_requested_at=now)
        )
        if done.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(job)
            return job
        session.refresh(job)
    if job.status == JobStatus.running.value:
        session.execute(update(Job).where(Job.id == job.id).values(cancel_requested_at=now))
        session.refresh(job)
        return job
    raise Conflict(f"job {job.id} is {job.status} and cannot be cancelled", param="id")


def mark_dispatched(session: Session, job_ids: list[str], when: datetime | None) -> None:
    """Record that ids were sent to the broker (``None`` records that sending failed)."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(dispatched_at=when))


def claim(session: Session, job_id_: str, *, owner: str, lease_seconds: float) -> Claim | None:
    """Take the lease on a queued job (or one whose lease expired) and start an attempt.

    Returns None when the job is not claimable: finished, cancelled, or leased by a live worker.
    """
    now = utcnow()
    token = f"{owner}:{uuid.uuid4().hex[:12]}"
    claimable = or_(
        Job.status == JobStatus.queued.value,
        and_(Job.status == JobStatus.running.value, Job.lease_expires_at < now),
    )
    result = session.execute(
        update(Job)
        .where(Job.id == job_id_, claimable, Job.cancel_requested_at.is_(None))
        .values(
            status=JobStatus.running.value,
            lease_owner=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1,
            started_at=now,
        )
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    job = session.get(Job, job_id_, populate_existing=True)
    assert job is not None
    return Claim(
        job_id=job.id,
        token=token,
        attempt=job.attempts,
        kind=job.kind,
        model=job.model,
        tier=job.tier,
        request=job.request,
        estimated_tokens=job.estimated_tokens,
    )


def _fenced(claim_: Claim) -> Any:
    return and_(
        Job.id == claim_.job_id,
        Job.lease_owner == claim_.token,
        Job.status == JobStatus.running.value,
    )


def start_retry(session: Session, claim_: Claim, *, lease_seconds: float) -> bool:
    """Count one more attempt on a held lease and extend it. False when the lease was lost."""
    result = session.execute(
        update(Job)
        .where(_fenced(claim_), Job.cancel_requested_at.is_(None))
        .values(
            attempts=Job.attempts + 1,
            lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
        )
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def complete(
    session: Session,
    claim_: Claim,
    *,
    result: dict[str, Any],
    usage: dict[str, Any] | None,
    columns: UsageColumns,
    limiter_wait_ms: int = 0,
) -> bool:
    """Store a success; only the lease holder can. A cancel requested meanwhile wins: the result is kept
    but the job ends cancelled."""
    now = utcnow()
    cancelled = session.scalar(select(Job.cancel_requested_at).where(Job.id == claim_.job_id))
    status = JobStatus.cancelled if cancelled is not None else JobStatus.succeeded
    done = session.execute(
        update(Job)
        .where(_fenced(claim_))
        .values(
            status=status.value,
            result=result,
            usage=usage,
            prompt_tokens=columns.prompt_tokens,
            completion_tokens=columns.completion_tokens,
            total_tokens=columns.total_tokens,
            cached_tokens=columns.cached_tokens,
            reasoning_tokens=columns.reasoning_tokens,
            images=columns.images,
            limiter_wait_ms=Job.limiter_wait_ms + limiter_wait_ms,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def fail(
    session: Session,
    claim_: Claim,
    *,
    error_type: str,
    message: str,
    status_code: int | None = None,
    body: dict[str, Any] | None = None,
    limiter_wait_ms: int = 0,
) -> bool:
    """Store a failure; only the lease holder can. The message and body are stored redacted. A cancel
    requested meanwhile wins: the error is kept but the job ends cancelled."""
    cancelled = session.scalar(select(Job.cancel_requested_at).where(Job.id == claim_.job_id))
    status = JobStatus.cancelled if cancelled is not None else JobStatus.failed
    done = session.execute(
        update(Job)
        .where(_fenced(claim_))
        .values(
            status=status.value,
            error_type=error_type,
            error_message=redact(message)[:4000],
            error_status=status_code,
            result=redact_value(body) if body is not None else None,
            limiter_wait_ms=Job.limiter_wait_ms + limiter_wait_ms,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=utcnow(),
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def release(session: Session, claim_: Claim, *, undo_attempt: bool = False) -> bool:
    """Give the job back to the backlog (shutdown, or a wait too long to hold a slot for); the dispatcher
    sends it again. ``undo_attempt`` uncounts the attempt the lease started when no call was made."""
    done = session.execute(
        update(Job)
        .where(_fenced(claim_))
        .values(
            attempts=Job.attempts - 1 if undo_attempt else Job.attempts,
            status=JobStatus.queued.value,
            lease_owner=None,
            lease_expires_at=None,
            dispatched_at=None,
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def end_cancelled(session: Session, claim_: Claim) -> bool:
    """End a running job whose cancel was requested; it is not retried."""
    done = session.execute(
        update(Job)
        .where(_fenced(claim_))
        .values(
            status=JobStatus.cancelled.value,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=utcnow(),
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]
