"""The SQL of provider batches: waiting groups, the intent, the lease of a run, each state change, and
the jobs a provider batch holds.

A deferred job waiting for a provider batch is ``running`` with the lease ``DEFERRED_OWNER`` and no
``provider_batch_id`` (``domain.storage.models.DEFERRED_PREDICATE``, a partial index). Taking it into a
provider batch writes the batch's id and its holder token (``holder_token``) into the job in the same
transaction as the provider batch's row: the intent. Every later write to the job names that token, so
a job that left the provider batch (its deadline passed and a live worker took it) is never written by
it again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, select, text, update
from sqlalchemy.orm import Session

from config.settings import Settings
from domain.ids import new_id
from domain.jobs.execution import PROVIDER_BATCH_WINDOW_SECONDS, ExecutionPath, batch_endpoint
from domain.leases import lease
from domain.leases.tables import JOB_LEASES, PROVIDER_BATCH_LEASES
from domain.provider_batches.grouping import FlushRule, GroupKey, WaitingGroup
from domain.provider_batches.lines import input_line
from domain.provider_batches.states import OPEN_STATES, ProviderBatchState, file_name
from domain.status import JobStatus
from domain.storage.dialect import dialect_of
from domain.storage.models import DEFERRED_PREDICATE, PROVIDER_BATCH_PATH, Job, ProviderBatch

IS_DEFERRED = text(DEFERRED_PREDICATE)
"""The WHERE clause of a job waiting for a provider batch (the partial index's predicate)."""
HELD_FOR = timedelta(seconds=PROVIDER_BATCH_WINDOW_SECONDS + 3600)
"""How long a provider batch holds its jobs' leases: its provider's window and an hour. The poller
settles them before (it cancels a provider batch once a job's deadline passed); the lease is the safety
net that hands them to live workers should no poller run at all."""


def holder_token(provider_batch_id: str) -> str:
    """The lease holder of the jobs a provider batch holds."""
    return f"provider_batch:{provider_batch_id}"


def waiting_groups(session: Session, settings: Settings) -> list[WaitingGroup]:
    """Every group of deferred jobs not yet in a provider batch, with its size (in jobs and in bytes of
    requests) and its oldest job. The waiting jobs are few (the flush thresholds send them on), so
    reading their requests' lengths costs little."""
    size = func.sum(func.length(cast(Job.request, Text)))
    query = (
        select(Job.tier, Job.kind, Job.model, func.count(), func.min(Job.created_at), size)
        .where(IS_DEFERRED)
        .group_by(Job.tier, Job.kind, Job.model)
    )
    groups = []
    for tier, kind, model, count, oldest, total in session.execute(query):
        known = settings.tiers.tiers.get(tier)
        provider = known.provider if known is not None else "openai"
        key = GroupKey(provider, batch_endpoint(kind), model, tier, kind)
        groups.append(WaitingGroup(key, int(count), oldest, int(total or 0)))
    return groups


def enqueued_tokens(session: Session, model: str) -> int:
    """The estimated tokens of ``model``'s jobs held by open provider batches (the provider's queue)."""
    query = select(func.coalesce(func.sum(Job.estimated_tokens), 0)).where(
        Job.model == model,
        Job.provider_batch_id.is_not(None),
        Job.status == "running",
        Job.execution_path == PROVIDER_BATCH_PATH,
    )
    return int(session.execute(query).scalar_one())


def open_intent(
    session: Session,
    key: GroupKey,
    rule: FlushRule,
    *,
    now: datetime,
    queue_tokens: int | None = None,
) -> tuple[str, int] | None:
    """Write a provider batch's row and take up to one file's worth of the group's waiting jobs into it,
    in the caller's transaction, within the model's ``queue_tokens`` (the provider's enqueued-token
    limit, None for none). Returns its id and how many jobs it took, or None when none was taken."""
    query = (
        select(Job.id, Job.request, Job.estimated_tokens)
        .where(IS_DEFERRED, Job.tier == key.tier, Job.kind == key.kind, Job.model == key.model)
        .order_by(Job.id)
        .limit(rule.max_lines)
    )
    found = list(session.execute(dialect_of(session).lock_skipping(query)))
    queued = enqueued_tokens(session, key.model) if queue_tokens is not None else 0
    room = None if queue_tokens is None else max(0, queue_tokens - queued)
    found = found[: rule.take_tokens([row[2] for row in found], room, nothing_queued=queued == 0)]
    rows = [(job_id, request) for job_id, request, _ in found]
    sizes = [len(input_line(job_id, key.endpoint, request)) for job_id, request in rows]
    rows = rows[: rule.take(sizes)]
    if not rows:
        return None
    provider_batch_id = new_id("pbatch")
    taken = session.execute(
        update(Job)
        .where(Job.id.in_([row[0] for row in rows]), IS_DEFERRED)
        .values(
            provider_batch_id=provider_batch_id,
            **lease.taken(JOB_LEASES, now + HELD_FOR, holder_token(provider_batch_id)),
        )
        .returning(Job.id)
    )
    ids = {row[0] for row in taken}
    if not ids:
        return None
    session.add(
        ProviderBatch(
            id=provider_batch_id,
            provider=key.provider,
            endpoint=key.endpoint,
            model=key.model,
            state=ProviderBatchState.pending.value,
            filename=file_name(provider_batch_id),
            request_count=len(ids),
            bytes=sum(size for (job_id, _), size in zip(rows, sizes, strict=False) if job_id in ids),
            polls=0,
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    return provider_batch_id, len(ids)


def due(session: Session, *, now: datetime, limit: int = 100) -> list[str]:
    """Open provider batches whose next step is due and that no run holds."""
    query = (
        select(ProviderBatch.id)
        .where(
            ProviderBatch.state.in_([state.value for state in OPEN_STATES]),
            (ProviderBatch.next_poll_at.is_(None)) | (ProviderBatch.next_poll_at <= now),
            lease.is_free(PROVIDER_BATCH_LEASES, now),
        )
        .order_by(ProviderBatch.next_poll_at, ProviderBatch.id)
        .limit(limit)
    )
    return [row[0] for row in session.execute(query)]


def take_lease(session: Session, provider_batch_id: str, *, now: datetime, seconds: float) -> bool:
    """Hold an open provider batch for one run; False when another run holds it or it is done."""
    done = session.execute(
        update(ProviderBatch)
        .where(
            ProviderBatch.id == provider_batch_id,
            ProviderBatch.state.in_([state.value for state in OPEN_STATES]),
            lease.is_free(PROVIDER_BATCH_LEASES, now),
        )
        .values(lease.taken(PROVIDER_BATCH_LEASES, lease.until(now, seconds)))
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def release(session: Session, provider_batch_id: str, *, next_poll_at: datetime | None) -> None:
    """Give the run's lease up; the next step is due at ``next_poll_at``."""
    session.execute(
        update(ProviderBatch)
        .where(ProviderBatch.id == provider_batch_id)
        .values(next_poll_at=next_poll_at, **lease.released(PROVIDER_BATCH_LEASES))
    )


def advance(session: Session, provider_batch_id: str, state: ProviderBatchState, **values: Any) -> None:
    """Store a step's outcome (the run holds the lease, so no other run writes the row meanwhile)."""
    session.execute(
        update(ProviderBatch).where(ProviderBatch.id == provider_batch_id).values(state=state.value, **values)
    )


def held_jobs(session: Session, provider_batch_id: str, *, limit: int | None = None) -> list[Job]:
    """The jobs the provider batch still holds (running under its token), oldest first."""
    query = select(Job).where(
        Job.provider_batch_id == provider_batch_id,
        Job.status == JobStatus.running.value,
        lease.held_by(JOB_LEASES, holder_token(provider_batch_id)),
    )
    return list(session.scalars(query.order_by(Job.id).limit(limit)))


def held_summary(session: Session, provider_batch_id: str) -> tuple[int, int, datetime | None]:
    """Of the jobs the provider batch still holds: how many, how many were told to cancel, and the
    earliest deadline (one aggregate, no row loaded)."""
    query = select(func.count(), func.count(Job.cancel_requested_at), func.min(Job.deadline_at)).where(
        Job.provider_batch_id == provider_batch_id,
        Job.status == JobStatus.running.value,
        lease.held_by(JOB_LEASES, holder_token(provider_batch_id)),
    )
    held, cancelled, earliest = session.execute(query).one()
    return int(held), int(cancelled), earliest


def to_live(session: Session, job_id: str, token: str) -> bool:
    """Hand a job the provider batch holds back to live execution: into the backlog, for the dispatcher."""
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running.value, lease.held_by(JOB_LEASES, token))
        .values(
            status=JobStatus.queued.value,
            dispatched_at=None,
            execution_path=ExecutionPath.live.value,
            **lease.released(JOB_LEASES),
        )
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def waiting_cancels(session: Session) -> list[tuple[str, str]]:
    """Deferred jobs told to cancel before a provider batch took them: (job id, holder token)."""
    query = select(Job.id, Job.lease_owner).where(IS_DEFERRED, Job.cancel_requested_at.is_not(None))
    return [(job_id, str(owner)) for job_id, owner in session.execute(query.limit(1000))]


def in_flight(session: Session) -> int:
    """Provider batches not yet done."""
    query = select(func.count()).where(ProviderBatch.state.in_([state.value for state in OPEN_STATES]))
    return int(session.scalar(query) or 0)
