"""Each tenant may have at most so many queued jobs; over it, new work answers 429 ``tenant_queue_full``.

The count never scans the backlog: it walks the ``(tenant_id, status)`` index and stops one past the
limit, so its cost is bounded by the limit, not by the size of the table or of the tenant's history.
The check runs inside the transaction that inserts the work, after the insert; two submissions racing
at the very edge can overshoot by the number of requests in flight, never by more.
"""

from __future__ import annotations

from sqlalchemy import Select, func, literal, select
from sqlalchemy.orm import Session

from domain.errors import TooManyRequests
from domain.models import Job
from domain.status import JobStatus

RETRY_AFTER_SECONDS = 30
"""How long a refused caller is told to wait: long enough for a worker pool to drain a good share."""


class TenantQueueFull(TooManyRequests):
    """This tenant already has the maximum number of queued jobs; try again later."""

    code = "tenant_queue_full"


def queued_count_query(tenant_id: str, *, cap: int) -> Select[int]:
    """``SELECT count(*)`` over at most ``cap`` index entries of the tenant's queued jobs."""
    window = (
        select(literal(1))
        .select_from(Job)
        .where(Job.tenant_id == tenant_id, Job.status == JobStatus.queued.value)
        .limit(cap)
        .subquery()
    )
    return select(func.count()).select_from(window)


def queued_jobs(session: Session, tenant_id: str, *, cap: int) -> int:
    """The tenant's queued jobs, counted up to ``cap`` (the answer is ``cap`` when there are more)."""
    return int(session.scalar(queued_count_query(tenant_id, cap=cap)) or 0)


def ensure_queue_room(session: Session, tenant_id: str, *, limit: int, adding: int = 0) -> None:
    """Raise TenantQueueFull when the tenant's queued jobs plus ``adding`` more would exceed ``limit``.

    Call it after inserting (``adding=0``, the new rows are counted) or before (``adding=n``)."""
    if adding > limit:
        raise _full(f"{adding} jobs are more than the {limit} this tenant may have queued")
    count = queued_jobs(session, tenant_id, cap=limit - adding + 1)
    if count + adding > limit:
        raise _full(f"this tenant already has {limit} queued jobs, the most it may have")


def _full(message: str) -> TenantQueueFull:
    return TenantQueueFull(f"{message}; try again when some have finished", retry_after=RETRY_AFTER_SECONDS)
