"""The steps that move a batch through its life, each in its own short transactions.

- ``run_ingest``: validating → in_progress (jobs inserted) or failed (errors listed).
- ``run_finalize``: once none of its jobs is queued or running, write the output and error files and
  end the batch completed, cancelled or expired.
- ``run_tick``: the periodic safety net: start expiry for batches past their completion window,
  end jobs of cancelled batches whose worker died, retry lost ingests, find finalizations that are
  due, and purge expired files.

Each terminal change records its ``batch.*`` webhook event (``domain.webhooks.events``) in the same
transaction when the batch named a webhook URL; callers send the returned delivery ids after the commit. The
Celery tasks in ``workers.batch_tasks`` only call these and send ids.
"""

from __future__ import annotations

import contextlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from domain.batches import file_repository
from domain.batches import repository as batch_repository
from domain.batches.ingest import IngestOutcome, ingest
from domain.batches.output import write_results
from domain.batches.schemas import FINALIZABLE, BatchStatus
from domain.batches.views import batch_out
from domain.leases import lease
from domain.leases.keeper import LeaseKeeper
from domain.leases.tables import BATCH_LEASES, JOB_LEASES
from domain.status import JobStatus
from domain.storage.models import Batch, Job, utcnow
from domain.storage.sessions import session_scope
from domain.webhooks import events

BATCH_EVENT_BY_STATUS = {
    BatchStatus.completed.value: "batch.completed",
    BatchStatus.failed.value: "batch.failed",
    BatchStatus.expired.value: "batch.expired",
    BatchStatus.cancelled.value: "batch.cancelled",
}


@dataclass
class StepResult:
    """What a step did: the batch's status afterwards (None: nothing done) and webhook deliveries."""

    status: str | None = None
    deliveries: list[str] = field(default_factory=list)


def record_batch_event(session: Session, batch_id: str, settings: Settings) -> str | None:
    """Record the terminal event of a batch that has a webhook URL; returns the delivery id."""
    batch = session.get(Batch, batch_id, populate_existing=True)
    event_type = BATCH_EVENT_BY_STATUS.get(batch.status) if batch is not None else None
    if batch is None or not batch.webhook_url or event_type is None:
        return None
    return events.record_event(
        session,
        tenant_id=batch.tenant_id,
        event_type=event_type,
        subject_id=batch.id,
        data=batch_out(batch).model_dump(mode="json"),
        url=batch.webhook_url,
        first_delay=settings.webhook_retry_schedule[0],
    )


def run_ingest(
    sessions: sessionmaker[Session],
    batch_id: str,
    settings: Settings,
    *,
    now: datetime | None = None,
    keeper: LeaseKeeper | None = None,
) -> tuple[IngestOutcome, StepResult]:
    """Validate the batch's file and fan it out into the backlog of queued jobs, or fail it. The run
    holds the batch's lease (``settings.lease_seconds``), which ``keeper``'s heartbeat renews. A process
    whose heartbeat cannot renew starts no run (the tick retries a lost ingest)."""
    if keeper is not None and keeper.failing:
        return IngestOutcome(status="skipped"), StepResult()
    now = now or utcnow()
    with session_scope(sessions) as session:
        leased = batch_repository.take_lease(
            session,
            batch_id,
            statuses=frozenset({BatchStatus.validating}),
            now=now,
            seconds=settings.lease_seconds,
        )
    if not leased:
        return IngestOutcome(status="skipped"), StepResult()
    step = StepResult()
    with _holding(keeper, batch_id), session_scope(sessions) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        outcome = ingest(session, batch, settings, now=now)
        step.status = None if outcome.status == "skipped" else outcome.status
        if outcome.status == "failed":
            delivery = record_batch_event(session, batch_id, settings)
            step.deliveries += [delivery] if delivery else []
    return outcome, step


def _holding(keeper: LeaseKeeper | None, batch_id: str) -> contextlib.AbstractContextManager[None]:
    return keeper.holding(BATCH_LEASES, batch_id) if keeper is not None else nullcontext()


def run_finalize(
    sessions: sessionmaker[Session],
    batch_id: str,
    settings: Settings,
    *,
    now: datetime | None = None,
    keeper: LeaseKeeper | None = None,
) -> StepResult:
    """Finalize the batch if none of its jobs is unfinished and no other run holds it (its lease, renewed
    by ``keeper``'s heartbeat while the run lasts). A process whose heartbeat cannot renew starts none."""
    if keeper is not None and keeper.failing:
        return StepResult()
    now = now or utcnow()
    with session_scope(sessions) as session:
        batch = session.get(Batch, batch_id)
        if batch is None or BatchStatus(batch.status) not in FINALIZABLE:
            return StepResult()
        if batch_repository.has_unfinished_jobs(session, batch_id):
            return StepResult()
        if not batch_repository.take_lease(
            session, batch_id, statuses=FINALIZABLE, now=now, seconds=settings.lease_seconds
        ):
            return StepResult()
        batch_repository.begin_finalizing(session, batch_id, now=now)
    with _holding(keeper, batch_id), session_scope(sessions) as session:
        batch = session.get(Batch, batch_id, populate_existing=True)
        assert batch is not None
        end = _end_status(batch)
        written = write_results(session, batch, end=end, now=now)
        usage = batch_repository.tally(session, batch_id).usage()
        finished = batch_repository.finish(
            session,
            batch_id,
            status=end,
            now=utcnow(),
            output_file_id=written.output_file_id,
            error_file_id=written.error_file_id,
            completed=written.completed,
            failed=written.failed,
            usage=usage,
        )
        if not finished:
            session.rollback()
            return StepResult()
        delivery = record_batch_event(session, batch_id, settings)
    return StepResult(status=end.value, deliveries=[delivery] if delivery else [])


def _end_status(batch: Batch) -> BatchStatus:
    if batch.status == BatchStatus.cancelling.value:
        return BatchStatus.cancelled
    if batch.expiring_at is not None:
        return BatchStatus.expired
    return BatchStatus.completed


@dataclass
class TickResult:
    """What the tick found: ingests to re-send, finalizations to run, and webhook deliveries."""

    to_ingest: list[str] = field(default_factory=list)
    to_finalize: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    expired: int = 0
    purged_files: int = 0


def run_tick(
    sessions: sessionmaker[Session], settings: Settings, *, now: datetime | None = None
) -> TickResult:
    now = now or utcnow()
    result = TickResult()
    with session_scope(sessions) as session:
        work = batch_repository.due_work(session, now=now)
    for batch_id in work.to_expire:
        with session_scope(sessions) as session:
            if batch_repository.begin_expiry(session, batch_id, now=now):
                result.expired += 1
            elif batch_repository.expire_unstarted(session, batch_id, now=now):
                result.expired += 1
                delivery = record_batch_event(session, batch_id, settings)
                result.deliveries += [delivery] if delivery else []
    with session_scope(sessions) as session:
        end_orphaned_cancels(session, now=now)
        result.to_ingest = work.to_ingest
        result.to_finalize = [
            batch_id
            for batch_id in dict.fromkeys([*work.to_finalize, *work.to_expire])
            if not batch_repository.has_unfinished_jobs(session, batch_id)
        ]
        result.purged_files = file_repository.purge_expired(session, now=now)
    return result


def end_orphaned_cancels(session: Session, *, now: datetime) -> int:
    """Batch jobs told to cancel while running, whose worker died (lease passed), end cancelled: no
    worker would claim them again, and their batch could never finish."""
    stopping = select(Batch.id).where(
        Batch.status.in_([status.value for status in FINALIZABLE]),
        or_(Batch.status == BatchStatus.cancelling.value, Batch.expiring_at.is_not(None)),
    )
    done = session.execute(
        update(Job)
        .where(
            Job.batch_id.in_(stopping),
            Job.status == JobStatus.running.value,
            Job.cancel_requested_at.is_not(None),
            lease.is_expired(JOB_LEASES, now),
        )
        .values(status=JobStatus.cancelled.value, finished_at=now, **lease.released(JOB_LEASES))
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
