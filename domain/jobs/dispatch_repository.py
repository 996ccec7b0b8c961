"""The dispatcher's SQL: the backlog lives in the database, each tier's queue holds a short window.

A job is in one of three places while it is queued or running:

- the **backlog**: ``status = 'queued' AND dispatched_at IS NULL`` (never sent, or given back);
- the **window**: ``status = 'queued' AND dispatched_at IS NOT NULL`` (its id is in the tier's queue);
- **running**: a worker holds its lease.

Every statement here reads through a partial index (``domain.storage.models``): the backlog index
``(tier, tenant_id, batch_id, priority DESC, id)``, the in-flight index ``(tier, tenant_id)`` over the
window and the running jobs, and the lease index over running jobs. Counting the window or the tenants'
loads reads only jobs in flight, and finding the lanes with work walks the backlog index one distinct
key at a time (a skip scan), so no statement's cost grows with the size of the backlog.

Predicates are written as literals, word for word as in the index definitions, so the planners of both
PostgreSQL and SQLite can prove the partial indexes apply (a bound parameter would hide the value).
On PostgreSQL, rows are taken with ``FOR UPDATE SKIP LOCKED`` and a round holds a transaction-scoped
advisory lock per tier, so several dispatchers can run at once without sending a job twice; on SQLite
a round starts by taking the database's write lock, so rounds take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import String, Table, any_, bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from domain.leases import lease
from domain.leases.tables import JOB_LEASES
from domain.status import JobStatus
from domain.storage.dialect import dialect_of
from domain.storage.models import BACKLOG_PREDICATE, IN_FLIGHT_PREDICATE, RUNNING_PREDICATE, Job
from domain.tenancy.fair_share import Candidate, Lane

BACKLOG = text(BACKLOG_PREDICATE)
IN_FLIGHT = text(IN_FLIGHT_PREDICATE)
IN_QUEUE = text("status = 'queued'")  # with IN_FLIGHT: in the queue, not yet claimed
RUNNING = text(RUNNING_PREDICATE)

_NEXT_TENANTS = text(
    """
    WITH RECURSIVE lanes(tenant_id) AS (
        SELECT (SELECT tenant_id FROM jobs
                WHERE tier = :tier AND tenant_id > :after AND __BACKLOG__
                ORDER BY tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT jobs.tenant_id FROM jobs
                WHERE jobs.tier = :tier AND jobs.tenant_id > lanes.tenant_id AND __BACKLOG__
                ORDER BY jobs.tenant_id LIMIT 1)
        FROM lanes WHERE lanes.tenant_id IS NOT NULL
    )
    SELECT tenant_id FROM lanes WHERE tenant_id IS NOT NULL LIMIT :limit
    """.replace("__BACKLOG__", BACKLOG_PREDICATE)
)

_NEXT_BATCHES = text(
    """
    WITH RECURSIVE lanes(batch_id) AS (
        SELECT (SELECT batch_id FROM jobs
                WHERE tier = :tier AND tenant_id = :tenant AND batch_id IS NOT NULL AND __BACKLOG__
                ORDER BY batch_id LIMIT 1)
        UNION ALL
        SELECT (SELECT jobs.batch_id FROM jobs
                WHERE jobs.tier = :tier AND jobs.tenant_id = :tenant AND jobs.batch_id > lanes.batch_id
                  AND __BACKLOG__
                ORDER BY jobs.batch_id LIMIT 1)
        FROM lanes WHERE lanes.batch_id IS NOT NULL
    )
    SELECT batch_id FROM lanes WHERE batch_id IS NOT NULL LIMIT :limit
    """.replace("__BACKLOG__", BACKLOG_PREDICATE)
)


def try_lock_tier(session: Session, tier: str) -> bool:
    """Take the tier's dispatch lock for this transaction; False when another dispatcher holds it.

    PostgreSQL: an advisory lock. SQLite: a write that changes nothing takes the database's write lock
    now, so the round's reads and writes see one state (SQLite has one writer; a second dispatcher waits).
    """
    if not dialect_of(session).row_locks:
        session.execute(text("UPDATE jobs SET priority = priority WHERE 1 = 0"))
        return True
    key = f"batchery.dispatch:{tier}"
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext(:key))"), {"key": key}))


@dataclass(frozen=True, slots=True)
class InFlight:
    """A tier's jobs in flight: those in its queue, and each tenant's load (queued there or running)."""

    queued: int
    loads: dict[str, int]


def in_flight(session: Session, tier: str) -> InFlight:
    """Count ``tier``'s jobs in flight, through the in-flight index (grouping by tenant keeps SQLite's
    planner on it too)."""
    query = (
        select(Job.tenant_id, Job.status, func.count())
        .where(Job.tier == tier, IN_FLIGHT)
        .group_by(Job.tenant_id, Job.status)
    )
    queued = 0
    loads: dict[str, int] = {}
    for tenant, status, count in session.execute(query):
        loads[tenant] = loads.get(tenant, 0) + int(count)
        if status == JobStatus.queued.value:
            queued += int(count)
    return InFlight(queued, loads)


def queued_in_window(session: Session, tier: str) -> int:
    """Jobs of ``tier`` whose id was sent and that no worker has claimed yet."""
    return in_flight(session, tier).queued


def backlog_lanes(session: Session, tier: str, *, limit: int, after: str = "") -> list[Lane]:
    """Up to ``limit`` lanes of ``tier`` that have backlog, in (tenant, batch) order starting with the
    first tenant after ``after`` and wrapping around. Each tenant's ``None`` lane (its jobs outside any
    batch) comes first, and is listed even when empty."""
    tenants = [
        row[0] for row in session.execute(_NEXT_TENANTS, {"tier": tier, "after": after, "limit": limit})
    ]
    if after and len(tenants) < limit:
        wrapped = session.execute(_NEXT_TENANTS, {"tier": tier, "after": "", "limit": limit - len(tenants)})
        tenants.extend(row[0] for row in wrapped if row[0] <= after)
    lanes: list[Lane] = []
    for tenant in tenants:
        lanes.append((tenant, None))  # may be empty: reading it costs one index probe
        params = {"tier": tier, "tenant": tenant, "limit": limit}
        lanes.extend((tenant, row[0]) for row in session.execute(_NEXT_BATCHES, params))
        if len(lanes) >= limit:
            break
    return lanes[:limit]


def lane_jobs(
    session: Session, tier: str, lane: Lane, after: Candidate | None, limit: int
) -> list[Candidate]:
    """Up to ``limit`` backlog jobs of one lane after ``after``: higher priority first, then oldest."""
    tenant, batch = lane
    query = select(Job.id, Job.priority).where(Job.tier == tier, Job.tenant_id == tenant, BACKLOG)
    query = query.where(Job.batch_id.is_(None) if batch is None else Job.batch_id == batch)
    if after is not None:
        query = query.where(
            (Job.priority < after.priority) | ((Job.priority == after.priority) & (Job.id > after.job_id))
        )
    # batch_id leads the ORDER BY (it is fixed within a lane) so the planner sees the index's own order;
    # PostgreSQL does not treat ``batch_id IS NULL`` as fixing the column.
    rows = session.execute(query.order_by(Job.batch_id, Job.priority.desc(), Job.id).limit(limit))
    return [Candidate(job_id, priority) for job_id, priority in rows]


def kinds_and_models(session: Session, job_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Each job's kind and model, for the labels its messages carry (one query per round)."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.kind, Job.model).where(Job.id.in_(list(job_ids))))
    return {job_id: (str(kind), str(model)) for job_id, kind, model in rows}


def take(session: Session, job_ids: Sequence[str], now: datetime) -> list[str]:
    """Mark the ones of ``job_ids`` still in the backlog as sent; returns them in the order given.

    On PostgreSQL it is one statement, with the ids as one array: the rows are locked with
    ``SKIP LOCKED`` in a subquery, so a row another transaction holds (a dispatcher, a cancel) is left
    for a later round instead of waited for."""
    if not job_ids:
        return []
    if dialect_of(session).row_locks:
        rows = session.execute(_TAKE_PG, {"take_ids": list(job_ids), "take_now": now})
    else:
        rows = session.execute(
            update(_JOBS)
            .where(_JOBS.c.id.in_(list(job_ids)), BACKLOG)
            .values(dispatched_at=now)
            .returning(_JOBS.c.id)
        )
    taken = {row[0] for row in rows}
    return [job_id for job_id in job_ids if job_id in taken]


_JOBS = cast(Table, Job.__table__)
_TAKE_PG = (
    update(_JOBS)
    .where(
        _JOBS.c.id.in_(
            select(_JOBS.c.id)
            .where(_JOBS.c.id == any_(bindparam("take_ids", type_=postgresql.ARRAY(String))), BACKLOG)
            .with_for_update(skip_locked=True)
        )
    )
    .values(dispatched_at=bindparam("take_now"))
    .returning(_JOBS.c.id)
)


def mark_unsent(session: Session, job_ids: Sequence[str]) -> None:
    """Put jobs whose id could not be sent back into the backlog."""
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(list(job_ids)), Job.status == JobStatus.queued.value)
            .values(dispatched_at=None)
        )


def resend_stale(
    session: Session, tier: str, *, sent_before: datetime, now: datetime, limit: int
) -> list[str]:
    """Queued jobs of ``tier`` sent before ``sent_before`` and still not claimed: their message may be lost
    (a broker that restarted empty, a worker killed holding it). They are marked sent again, now."""
    query = (
        select(Job.id)
        .where(Job.tier == tier, IN_FLIGHT, IN_QUEUE, Job.dispatched_at < sent_before)
        .order_by(Job.dispatched_at)
        .limit(limit)
    )
    query = dialect_of(session).lock_skipping(query)
    ids = [row[0] for row in session.execute(query)]
    if not ids:
        return []
    statement = (
        update(Job)
        .where(Job.id.in_(ids), Job.status == JobStatus.queued.value, Job.dispatched_at < sent_before)
        .values(dispatched_at=now)
        .returning(Job.id)
    )
    resent = {row[0] for row in session.execute(statement)}
    return [job_id for job_id in ids if job_id in resent]


def requeue_expired(session: Session, tier: str, *, now: datetime, limit: int) -> tuple[int, list[str]]:
    """Running jobs of ``tier`` whose lease expired go back to the backlog (or end cancelled when a
    cancel was requested). Their worker is gone or too late: its fenced writes can no longer land.
    Returns how many changed, and the ids that ended cancelled (their terminal event is due)."""
    query = (
        select(Job.id, Job.cancel_requested_at)
        .where(Job.tier == tier, RUNNING, lease.is_expired(JOB_LEASES, now))
        .order_by(Job.lease_expires_at)
        .limit(limit)
    )
    query = dialect_of(session).lock_skipping(query)
    rows = list(session.execute(query))
    if not rows:
        return 0, []
    still_expired = (Job.status == JobStatus.running.value) & lease.is_expired(JOB_LEASES, now)
    cancelled = [job_id for job_id, cancel in rows if cancel is not None]
    requeued = [job_id for job_id, cancel in rows if cancel is None]
    released = lease.released(JOB_LEASES)
    done = 0
    ended: list[str] = []
    if cancelled:
        result = session.execute(
            update(Job)
            .where(Job.id.in_(cancelled), still_expired)
            .values(status=JobStatus.cancelled.value, finished_at=now, **released)
            .returning(Job.id)
        )
        ended = [row[0] for row in result]
        done += len(ended)
    if requeued:
        result = session.execute(
            update(Job)
            .where(Job.id.in_(requeued), still_expired)
            .values(status=JobStatus.queued.value, dispatched_at=None, **released)
        )
        done += int(result.rowcount)  # type: ignore[attr-defined]
    return done, ended


def release_owned(session: Session, worker_id: str) -> int:
    """Give back every running job whose lease one worker process holds (a shutdown past its grace)."""
    result = session.execute(
        update(Job)
        .where(RUNNING, Job.lease_owner.startswith(f"{worker_id}:", autoescape=True))
        .values(status=JobStatus.queued.value, dispatched_at=None, **lease.released(JOB_LEASES))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
