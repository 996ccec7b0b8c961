"""The job counters the API moves: jobs submitted, and queued jobs cancelled (a running job's
cancellation is counted by the worker that ends it).

They are written to Redis like every other counter (``domain.metric_store``), so the figures add up
across API processes. A failure to write one is logged and never fails the request.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import redis
from fastapi import Depends, Request

from config.settings import Settings
from domain import metric_catalog as catalog
from domain.metric_store import MetricBatch, MetricStore
from domain.models import Job
from domain.status import JobStatus

log = logging.getLogger(__name__)


class JobCounters:
    """Counts job events seen by the API."""

    def __init__(self, client: redis.Redis[Any], settings: Settings) -> None:
        self.store = MetricStore(client, settings.redis_prefix)
        self.labels = catalog.MetricLabels(settings.tiers)

    def submitted(self, jobs: list[Job]) -> None:
        """Jobs just created (an idempotent replay is not a new job)."""
        batch = MetricBatch()
        for job in jobs:
            labels = (self.labels.tier(job.tier), self.labels.kind(job.kind), self.labels.model(job.model))
            batch.count(catalog.JOBS_SUBMITTED, labels)
        self._write(batch)

    def cancelled(self, job: Job) -> None:
        """A cancel request answered; only a job that is now cancelled is counted here."""
        if job.status != JobStatus.cancelled.value:
            return
        batch = MetricBatch()
        labels = (self.labels.tier(job.tier), self.labels.kind(job.kind), self.labels.model(job.model))
        batch.count(catalog.JOBS_FINISHED, (*labels, JobStatus.cancelled.value))
        self._write(batch)

    def _write(self, batch: MetricBatch) -> None:
        try:
            self.store.write(batch, now=0.0)
        except (redis.RedisError, OSError) as exc:
            log.warning("job counter not written: %s", type(exc).__name__)


def get_job_counters(request: Request) -> JobCounters:
    """The app's counters, made on first use."""
    state = request.app.state
    counters: JobCounters | None = getattr(state, "job_counters", None)
    if counters is None:
        counters = JobCounters(state.redis, state.settings)
        state.job_counters = counters
    return counters


JobCountersDep = Annotated[JobCounters, Depends(get_job_counters)]
