"""Counts of queued and running jobs per tier, read from the database when they are shown."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.status import JobStatus
from domain.storage.models import Job

__all__ = ["TierCounts", "tier_counts"]


class TierCounts(dict[str, dict[str, int]]):
    """``counts[tier][status]`` for the statuses queued and running; missing entries are 0."""

    def get_count(self, tier: str, status: JobStatus) -> int:
        return self.get(tier, {}).get(status.value, 0)


def tier_counts(session: Session) -> TierCounts:
    """Queued (the backlog, sent to the broker or not) and running (holding a lease) jobs per tier.

    One ``GROUP BY`` over the rows in those two statuses, which ``ix_jobs_dispatch`` covers.
    """
    live = (JobStatus.queued.value, JobStatus.running.value)
    query = (
        select(Job.tier, Job.status, func.count()).where(Job.status.in_(live)).group_by(Job.tier, Job.status)
    )
    counts = TierCounts()
    for tier, status, count in session.execute(query):
        counts.setdefault(str(tier), {})[str(status)] = int(count)
    return counts
