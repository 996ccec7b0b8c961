"""Every SQL statement on batches, and on the jobs of a batch as a group.

Status changes are conditional UPDATEs on the current status, so two processes racing (an ingest and a
cancel, two finalizations) cannot both win. Ingestion and finalization also take a short lease
(``lease_expires_at``) so that the periodic tick does not start a second run while one is under way; a
run whose process died is retried once its lease has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from domain.batches import file_repository
from domain.batches.schemas import COMPLETION_WINDOWS, FINALIZABLE, BatchCreate, BatchStatus
from domain.errors import Conflict, InvalidRequest, NotFound
from domain.ids import new_id
from domain.leases import lease
from domain.leases.tables import BATCH_LEASES
from domain.status import JobStatus
from domain.storage.models import Batch, Job

UNFINISHED = (JobStatus.queued.value, JobStatus.running.value)
STALE_VALIDATING_SECONDS = 30.0
"""A batch still ``validating`` this long after creation, with no ingest lease, had its ingest lost."""


@dataclass(frozen=True, slots=True)
class Tally:
    """The jobs of one batch by status, and their summed usage."""

    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def unfinished(self) -> int:
        return self.queued + self.running

    def usage(self) -> dict[str, Any]:
        """The Batch object's ``usage`` shape."""
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


def create(session: Session, body: BatchCreate, *, tenant_id: str, now: datetime) -> Batch:
    """Insert a ``validating`` batch for an uploaded ``purpose=batch`` file of the caller's."""
    try:
        stored = file_repository.get_file(session, body.input_file_id, tenant_id=tenant_id)
    except NotFound as exc:
        raise NotFound(exc.message, param="input_file_id") from exc
    if stored.purpose != "batch":
        raise InvalidRequest(
            f"file {stored.id} has purpose {stored.purpose!r}; a batch needs purpose 'batch'",
            param="input_file_id",
            code="invalid_file_purpose",
        )
    if stored.status != "processed":
        raise Conflict(f"file {stored.id} is still being uploaded", param="input_file_id")
    expires = body.output_expires_after.seconds if body.output_expires_after else None
    batch = Batch(
        id=new_id("batch"),
        tenant_id=tenant_id,
        endpoint=body.endpoint.value,
        input_file_id=stored.id,
        completion_window=body.completion_window,
        status=BatchStatus.validating.value,
        created_at=now,
        expires_at=now + timedelta(seconds=COMPLETION_WINDOWS[body.completion_window]),
        meta=body.metadata,
        webhook_url=body.webhook_url,
        output_expires_seconds=expires,
        execution=body.execution.value,
        request_total=0,
        request_completed=0,
        request_failed=0,
        updated_at=now,
    )
    session.add(batch)
    session.flush()
    return batch


def get(session: Session, batch_id: str, *, tenant_id: str) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None or batch.tenant_id != tenant_id:
        raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


def list_page(session: Session, *, tenant_id: str, after: str | None, limit: int) -> tuple[list[Batch], bool]:
    """Newest first; ``after`` is the last id of the previous page. Returns (batches, has_more)."""
    query = select(Batch).where(Batch.tenant_id == tenant_id)
    if after is not None:
        query = query.where(Batch.id < after)
    rows = list(session.scalars(query.order_by(Batch.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def tally(session: Session, batch_id: str) -> Tally:
    """Count the batch's jobs by status and sum their usage (one indexed GROUP BY)."""
    rows = session.execute(
        select(
            Job.status,
            func.count(),
            func.sum(Job.prompt_tokens),
            func.sum(Job.completion_tokens),
            func.sum(Job.total_tokens),
            func.sum(Job.cached_tokens),
            func.sum(Job.reasoning_tokens),
        )
        .where(Job.batch_id == batch_id)
        .group_by(Job.status)
    ).all()
    counts = {status: int(count) for status, count, *_ in rows}
    sums = [sum(int(row[index] or 0) for row in rows) for index in range(2, 7)]
    return Tally(
        queued=counts.get(JobStatus.queued.value, 0),
        running=counts.get(JobStatus.running.value, 0),
        succeeded=counts.get(JobStatus.succeeded.value, 0),
        failed=counts.get(JobStatus.failed.value, 0),
        cancelled=counts.get(JobStatus.cancelled.value, 0),
        input_tokens=sums[0],
        output_tokens=sums[1],
        total_tokens=sums[2],
        cached_tokens=sums[3],
        reasoning_tokens=sums[4],
    )


def has_unfinished_jobs(session: Session, batch_id: str) -> bool:
    found = session.scalar(
        select(Job.id).where(Job.batch_id == batch_id, Job.status.in_(UNFINISHED)).limit(1)
    )
    return found is not None


def batch_of_job(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.batch_id).where(Job.id == job_id))


def take_lease(
    session: Session, batch_id: str, *, statuses: frozenset[BatchStatus], now: datetime, seconds: float
) -> bool:
    """Hold the batch for one ingest or finalization run; False when another holds it or the status moved."""
    done = session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.status.in_([status.value for status in statuses]),
            lease.is_free(BATCH_LEASES, now),
        )
        .values(lease.taken(BATCH_LEASES, lease.until(now, seconds)))
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def start(session: Session, batch_id: str, *, total: int, model: str | None, now: datetime) -> bool:
    """validating → in_progress, once its jobs are inserted (in the same transaction)."""
    done = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.validating.value)
        .values(
            status=BatchStatus.in_progress.value,
            in_progress_at=now,
            request_total=total,
            model=model,
            **lease.released(BATCH_LEASES),
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def fail(session: Session, batch_id: str, errors: list[dict[str, Any]], *, now: datetime) -> bool:
    """validating → failed, with the problems found in the input file."""
    done = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.validating.value)
        .values(status=BatchStatus.failed.value, failed_at=now, errors=errors, **lease.released(BATCH_LEASES))
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def cancel(session: Session, batch: Batch, *, now: datetime) -> Batch:
    """validating or in_progress → cancelling; queued jobs are cancelled now, running ones when their
    call returns. Cancelling again is a no-op; a finished batch cannot be cancelled (409)."""
    if batch.status == BatchStatus.cancelling.value:
        return batch
    done = session.execute(
        update(Batch)
        .where(
            Batch.id == batch.id,
            Batch.status.in_([BatchStatus.validating.value, BatchStatus.in_progress.value]),
        )
        .values(status=BatchStatus.cancelling.value, cancelling_at=now)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(batch)
        raise Conflict(f"Cannot cancel a batch with status '{batch.status}'.", param="batch_id")
    cancel_jobs(session, batch.id, now=now)
    session.refresh(batch)
    return batch


def cancel_jobs(session: Session, batch_id: str, *, now: datetime) -> None:
    session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == JobStatus.queued.value)
        .values(status=JobStatus.cancelled.value, finished_at=now, cancel_requested_at=now)
    )
    session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == JobStatus.running.value)
        .values(cancel_requested_at=now)
    )


def begin_expiry(session: Session, batch_id: str, *, now: datetime) -> bool:
    """The completion window passed: stop the unfinished jobs; finalization then ends it ``expired``."""
    done = session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.status == BatchStatus.in_progress.value,
            Batch.expiring_at.is_(None),
        )
        .values(expiring_at=now)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    cancel_jobs(session, batch_id, now=now)
    return True


def expire_unstarted(session: Session, batch_id: str, *, now: datetime) -> bool:
    """A batch whose window passed before its file was even ingested ends ``expired`` at once."""
    done = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.validating.value)
        .values(status=BatchStatus.expired.value, expired_at=now, **lease.released(BATCH_LEASES))
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def begin_finalizing(session: Session, batch_id: str, *, now: datetime) -> None:
    """in_progress → finalizing (a cancelling batch stays cancelling while its files are written)."""
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.in_progress.value)
        .values(status=BatchStatus.finalizing.value, finalizing_at=now)
    )


def finish(
    session: Session,
    batch_id: str,
    *,
    status: BatchStatus,
    now: datetime,
    output_file_id: str | None,
    error_file_id: str | None,
    completed: int,
    failed: int,
    usage: dict[str, Any],
) -> bool:
    """finalizing or cancelling → completed, expired or cancelled, with the files and final counts."""
    stamp = {
        BatchStatus.completed: "completed_at",
        BatchStatus.expired: "expired_at",
        BatchStatus.cancelled: "cancelled_at",
    }[status]
    done = session.execute(
        update(Batch)
        .where(
            Batch.id == batch_id,
            Batch.status.in_([BatchStatus.finalizing.value, BatchStatus.cancelling.value]),
        )
        .values(
            {
                "status": status.value,
                stamp: now,
                "output_file_id": output_file_id,
                "error_file_id": error_file_id,
                "request_completed": completed,
                "request_failed": failed,
                "usage": usage,
                **lease.released(BATCH_LEASES),
            }
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class TickWork:
    """What the periodic tick found to do."""

    to_expire: list[str]
    to_ingest: list[str]
    to_finalize: list[str]


def due_work(session: Session, *, now: datetime, limit: int = 100) -> TickWork:
    """Batches past their window, ingests that were lost, and finalizations that may be due."""
    free = lease.is_free(BATCH_LEASES, now)
    window_passed = and_(Batch.expires_at.is_not(None), Batch.expires_at < now)
    to_expire = select(Batch.id).where(
        Batch.status.in_([BatchStatus.in_progress.value, BatchStatus.validating.value]),
        window_passed,
        Batch.expiring_at.is_(None),
    )
    stale = now - timedelta(seconds=STALE_VALIDATING_SECONDS)
    lost_ingest = or_(
        lease.is_expired(BATCH_LEASES, now), and_(Batch.lease_expires_at.is_(None), Batch.created_at < stale)
    )
    to_ingest = select(Batch.id).where(Batch.status == BatchStatus.validating.value, lost_ingest)
    finalizable = [status.value for status in FINALIZABLE]
    to_finalize = select(Batch.id).where(Batch.status.in_(finalizable), free)
    return TickWork(
        to_expire=list(session.scalars(to_expire.order_by(Batch.id).limit(limit))),
        to_ingest=list(session.scalars(to_ingest.order_by(Batch.id).limit(limit))),
        to_finalize=list(session.scalars(to_finalize.order_by(Batch.id).limit(limit))),
    )
