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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.errors import Conflict, IdempotencyKeyReused, NotFound
from domain.ids import job_id
from domain.jobs import attempts as attempt_log
from domain.jobs.attempts import AttemptRecord
from domain.jobs.execution import ExecutionPath, path_columns
from domain.jobs.statements import CLAIM, COMPLETE, COMPLETE_AND_LOG
from domain.leases import lease
from domain.leases.tables import JOB_LEASES
from domain.redaction import redact, redact_value
from domain.status import JobStatus
from domain.storage.dialect import dialect_of
from domain.storage.models import Job, utcnow
from domain.storage.sessions import Executor
from domain.tokens.estimates import UsageColumns


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
    tenant_id: str = field(kw_only=True)
    idempotency_key: str | None = None
    execution_path: ExecutionPath = ExecutionPath.live
    deadline_at: datetime | None = None


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
    has_webhook: bool = True
    """False when the job has no webhook URL, so its end records no event (when unknown: True)."""
    batch_id: str | None = None


def request_hash(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    session: Session,
    new: NewJob,
    *,
    request_fingerprint: str | None = None,
    dispatched_at: datetime | None = None,
) -> tuple[Job, bool]:
    """Insert a queued job. Returns (job, created); an idempotent repeat returns the original.
    ``dispatched_at`` marks a new job as sent by the fast path (the caller sends it after the commit)."""
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
        dispatched_at=dispatched_at,
        created_at=utcnow(),
    )
    for column, value in path_columns(new.execution_path, new.deadline_at).items():
        setattr(job, column, value)
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


def get_job(session: Session, job_id_: str, *, tenant_id: str) -> Job:
    job = session.get(Job, job_id_)
    if job is None or job.tenant_id != tenant_id:
        raise NotFound(f"no job {job_id_!r}", param="id")
    return job


def list_jobs(
    session: Session,
    *,
    tenant_id: str,
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


def cancel_job(session: Session, job_id_: str, *, tenant_id: str) -> Job:
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


def claim(
    session: Executor, job_id_: str, *, owner: str, lease_seconds: float, token: str | None = None
) -> Claim | None:
    """Take the lease on a queued job (or one whose lease expired) and start an attempt.

    Returns None when the job is not claimable: finished, cancelled, or leased by a live worker.
    """
    params = claim_values(job_id_, owner=owner, lease_seconds=lease_seconds, token=token)
    row = session.execute(CLAIM, params).one_or_none()
    return claim_from_row(params, row) if row is not None else None


def claim_values(
    job_id_: str, *, owner: str, lease_seconds: float, token: str | None = None
) -> dict[str, Any]:
    """The parameters of ``CLAIM``. Give the same ``token`` when trying a claim again after an error
    (``new_lease_token``): a claim that landed although its answer was lost is then taken again, not
    left leased to nobody until the lease expires."""
    now = utcnow()
    return {
        "claim_id": job_id_,
        "claim_now": now,
        "claim_token": token or new_lease_token(owner),
        "claim_until": lease.until(now, lease_seconds),
    }


def new_lease_token(owner: str) -> str:
    return f"{owner}:{uuid.uuid4().hex[:12]}"


def claim_from_row(values: dict[str, Any], row: Any) -> Claim:
    """The claim that ``CLAIM`` run with ``values`` returned as ``row``."""
    return Claim(
        job_id=values["claim_id"],
        token=values["claim_token"],
        attempt=row.attempts,
        kind=row.kind,
        model=row.model,
        tier=row.tier,
        request=row.request,
        estimated_tokens=row.estimated_tokens,
        has_webhook=row.webhook_url is not None,
        batch_id=row.batch_id,
    )


# The statements the worker runs for every job live in ``domain.jobs.statements``.


def _fenced(claim_: Claim) -> Any:
    return and_(
        Job.id == claim_.job_id,
        lease.held_by(JOB_LEASES, claim_.token),
        Job.status == JobStatus.running.value,
    )


def start_retry(session: Session, claim_: Claim, *, lease_seconds: float) -> bool:
    """Count one more attempt on a held lease and extend it. False when the lease was lost."""
    result = session.execute(
        update(Job)
        .where(_fenced(claim_), Job.cancel_requested_at.is_(None))
        .values(
            attempts=Job.attempts + 1,
            **lease.taken(JOB_LEASES, lease.until(utcnow(), lease_seconds), claim_.token),
        )
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def cancel_requested(session: Session, claim_: Claim) -> bool:
    """Whether the job was told to cancel, or its lease is no longer the claim's."""
    row = session.execute(select(Job.cancel_requested_at).where(_fenced(claim_))).one_or_none()
    return row is None or row[0] is not None


def complete(
    session: Executor,
    claim_: Claim,
    *,
    result: dict[str, Any],
    usage: dict[str, Any] | None,
    columns: UsageColumns,
    limiter_wait_ms: int = 0,
    attempt: AttemptRecord | None = None,
) -> JobStatus | None:
    """Store a success; only the lease holder can. A cancel requested meanwhile wins: the result is kept
    but the job ends cancelled. Answers the status stored (``succeeded`` or ``cancelled``), or ``None``
    when the lease was lost and nothing was written. ``attempt`` is logged with it, atomically, and only
    when the write landed: where the database has writable CTEs, in the same statement
    (``COMPLETE_AND_LOG``)."""
    params = complete_values(
        claim_, result=result, usage=usage, columns=columns, limiter_wait_ms=limiter_wait_ms
    )
    if attempt is not None and dialect_of(session).writable_ctes:
        return stored_status(session.scalar(COMPLETE_AND_LOG, {**params, **log_values(attempt)}))
    stored = stored_status(session.scalar(COMPLETE, params))
    if stored is not None and attempt is not None:
        attempt_log.record(session, claim_.job_id, attempt)
    return stored


def complete_values(
    claim_: Claim,
    *,
    result: dict[str, Any],
    usage: dict[str, Any] | None,
    columns: UsageColumns,
    limiter_wait_ms: int,
) -> dict[str, Any]:
    """The parameters of the completion (``COMPLETE_AND_LOG`` adds the attempt's)."""
    return {
        "fence_id": claim_.job_id,
        "fence_token": claim_.token,
        "done_result": result,
        "done_usage": usage,
        "done_prompt_tokens": columns.prompt_tokens,
        "done_completion_tokens": columns.completion_tokens,
        "done_total_tokens": columns.total_tokens,
        "done_cached_tokens": columns.cached_tokens,
        "done_reasoning_tokens": columns.reasoning_tokens,
        "done_images": columns.images,
        "done_wait_ms": limiter_wait_ms,
        "done_at": utcnow(),
    }


def log_values(attempt: AttemptRecord) -> dict[str, Any]:
    """The parameters ``COMPLETE_AND_LOG`` adds to the completion's: the attempt's log row."""
    return {f"log_{name}": value for name, value in attempt_log.row_values(attempt).items()}


def stored_status(value: str | None) -> JobStatus | None:
    return JobStatus(value) if value is not None else None


def fail(
    session: Session,
    claim_: Claim,
    *,
    error_type: str,
    message: str,
    status_code: int | None = None,
    body: dict[str, Any] | None = None,
    limiter_wait_ms: int = 0,
) -> JobStatus | None:
    """Store a failure; only the lease holder can. The message and body are stored redacted. A cancel
    requested meanwhile wins, decided under the row's lock: the error is kept but the job ends cancelled.
    Answers the status stored (``failed`` or ``cancelled``), or ``None`` when the lease was lost."""
    stored = session.scalar(
        update(Job)
        .where(_fenced(claim_))
        .values(
            status=case(
                (Job.cancel_requested_at.is_(None), JobStatus.failed.value),
                else_=JobStatus.cancelled.value,
            ),
            error_type=error_type,
            error_message=redact(message)[:4000],
            error_status=status_code,
            result=redact_value(body) if body is not None else None,
            limiter_wait_ms=Job.limiter_wait_ms + limiter_wait_ms,
            **lease.released(JOB_LEASES),
            finished_at=utcnow(),
        )
        .returning(Job.status)
    )
    return stored_status(stored)


def release(session: Session, claim_: Claim, *, undo_attempt: bool = False) -> bool:
    """Give the job back to the backlog (shutdown, or a wait too long to hold a slot for); the dispatcher
    sends it again. ``undo_attempt`` uncounts the attempt the lease started when no call was made."""
    done = session.execute(
        update(Job)
        .where(_fenced(claim_))
        .values(
            attempts=Job.attempts - 1 if undo_attempt else Job.attempts,
            status=JobStatus.queued.value,
            **lease.released(JOB_LEASES),
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
            **lease.released(JOB_LEASES),
            finished_at=utcnow(),
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]
