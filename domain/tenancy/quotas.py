"""Each tenant may have at most so many queued jobs; over it, new work answers 429 ``tenant_queue_full``.
Deferred jobs (waiting for, or held by, a provider batch: stored ``running`` on the provider batch
path) count as queued: they are work waiting, however long.

The count never scans the backlog: it walks the ``(tenant_id, status)`` index and stops one past the
limit, so its cost is bounded by the limit, not by the size of the table or of the tenant's history.
The check runs inside the transaction that inserts the work, after the insert; two submissions racing
at the very edge can overshoot by the number of requests in flight, never by more.

A count still walks up to ``limit`` index entries (about 20 ms at 100,000 on PostgreSQL), so single
submissions go through ``QueueRoom``: while a tenant is more than a tenth of its limit away from it,
one count per second per process is enough, and the submissions in between are tallied locally.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Select, func, literal, select
from sqlalchemy.orm import Session

from domain.errors import TooManyRequests
from domain.status import JobStatus
from domain.storage.models import Job

RETRY_AFTER_SECONDS = 30
"""How long a refused caller is told to wait: long enough for a worker pool to drain a good share."""


class TenantQueueFull(TooManyRequests):
    """This tenant already has the maximum number of queued jobs; try again later."""

    code = "tenant_queue_full"


def queued_count_query(*, tenant_id: str, cap: int) -> Select[int]:
    """``SELECT count(*)`` over at most ``cap`` index entries of the tenant's queued jobs."""
    window = (
        select(literal(1))
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.status == JobStatus.queued.value)
        .limit(cap)
        .subquery()
    )
    return select(func.count()).select_from(window)


def deferred_count_query(*, tenant_id: str, cap: int) -> Select[int]:
    """``SELECT count(*)`` over at most ``cap`` of the tenant's deferred jobs (its running rows, through
    the same index, then their path)."""
    window = (
        select(literal(1))
        .select_from(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.status == JobStatus.running.value,
            Job.execution_path == "provider_batch",
        )
        .limit(cap)
        .subquery()
    )
    return select(func.count()).select_from(window)


def queued_jobs(session: Session, *, tenant_id: str, cap: int) -> int:
    """The tenant's queued and deferred jobs, counted up to ``cap`` (the answer is ``cap`` when there are
    more)."""
    queued = int(session.scalar(queued_count_query(tenant_id=tenant_id, cap=cap)) or 0)
    if queued >= cap:
        return queued
    return queued + int(session.scalar(deferred_count_query(tenant_id=tenant_id, cap=cap - queued)) or 0)


def ensure_queue_room(session: Session, *, tenant_id: str, limit: int, adding: int = 0) -> None:
    """Raise TenantQueueFull when the tenant's queued jobs plus ``adding`` more would exceed ``limit``.

    Call it after inserting (``adding=0``, the new rows are counted) or before (``adding=n``)."""
    if adding > limit:
        raise _full(f"{adding} jobs are more than the {limit} this tenant may have queued")
    count = queued_jobs(session, tenant_id=tenant_id, cap=limit - adding + 1)
    if count + adding > limit:
        raise _full(f"this tenant already has {limit} queued jobs, the most it may have")


def _full(message: str) -> TenantQueueFull:
    return TenantQueueFull(f"{message}; try again when some have finished", retry_after=RETRY_AFTER_SECONDS)


class QueueRoom:
    """Admits single submissions, recounting a tenant's queued jobs only when it may be near its limit.

    After a real count, submissions within ``recount_after`` seconds are admitted on a local tally while
    the tally stays a tenth of the limit below it; then the next submission counts again. Other
    processes admit at the same time, so the tally can lag by what they admit within one window; the
    limit protects the service, not an exact figure, and a refusal is always decided by a real count.
    """

    def __init__(
        self,
        *,
        recount_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        count: Callable[..., int] = queued_jobs,
        max_tenants: int = 10_000,
    ) -> None:
        self._recount_after = recount_after
        self._clock = clock
        self._count = count
        self._max_tenants = max_tenants
        self._lock = threading.Lock()
        self._tally: dict[str, tuple[int, float]] = {}

    def admit_one(self, session: Session, *, tenant_id: str, limit: int) -> None:
        """Call after inserting one job (it is counted); raises TenantQueueFull over the limit."""
        now = self._clock()
        with self._lock:
            seen = self._tally.get(tenant_id)
            fresh = seen is not None and now - seen[1] < self._recount_after
            if seen is not None and fresh and seen[0] + 1 <= limit - max(1, limit // 10):
                self._tally[tenant_id] = (seen[0] + 1, seen[1])
                return
        count = self._count(session, tenant_id=tenant_id, cap=limit + 1)
        with self._lock:
            if len(self._tally) >= self._max_tenants:
                self._tally.clear()
            self._tally[tenant_id] = (min(count, limit), now)
        if count > limit:
            raise _full(f"this tenant already has {limit} queued jobs, the most it may have")


_submissions = QueueRoom()


def admit_submission(session: Session, *, tenant_id: str, limit: int) -> None:
    """``QueueRoom.admit_one`` on this process's tally (the API calls it for each new job)."""
    _submissions.admit_one(session, tenant_id=tenant_id, limit=limit)
