"""Counts of queued, running and deferred jobs per tier, and of provider batches in flight, read from the
database when they are shown."""

from __future__ import annotations

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from domain.status import JobStatus
from domain.storage.models import Job, ProviderBatch

__all__ = ["DEFERRED", "TierCounts", "tier_counts"]

DEFERRED = "deferred"
"""The pseudo-status of a job on the provider batch path (stored ``running``, held by that path)."""


class TierCounts(dict[str, dict[str, int]]):
    """``counts[tier][status]`` for the statuses queued and running (a worker holds it) and ``deferred``;
    missing entries are 0. ``provider_batches`` counts the provider batches not yet settled."""

    provider_batches: int = 0

    def get_count(self, tier: str, status: JobStatus | str) -> int:
        return self.get(tier, {}).get(str(status), 0)


def tier_counts(session: Session) -> TierCounts:
    """Queued (the backlog, sent to the broker or not) and running (holding a lease) jobs per tier.

    One ``GROUP BY`` over the rows in those two statuses, which ``ix_jobs_dispatch`` covers.
    """
    live = (JobStatus.queued.value, JobStatus.running.value)
    deferred = and_(Job.status == JobStatus.running.value, Job.execution_path == "provider_batch")
    status = case((deferred, DEFERRED), else_=Job.status).label("shown")
    query = select(Job.tier, status, func.count()).where(Job.status.in_(live)).group_by(Job.tier, status)
    counts = TierCounts()
    for tier, shown, count in session.execute(query):
        counts.setdefault(str(tier), {})[str(shown)] = int(count)
    open_states = ("pending", "uploaded", "submitted")
    in_flight = select(func.count()).where(ProviderBatch.state.in_(open_states))
    counts.provider_batches = int(session.scalar(in_flight) or 0)
    return counts
