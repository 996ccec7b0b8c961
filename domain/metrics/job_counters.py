"""The job counters moved where jobs are created or cancelled outside a worker's run: jobs submitted
(by the API, a bulk submission or a batch's ingestion), and queued jobs cancelled (a running job's
cancellation is counted by the worker that ends it).

They are written to Redis like every other counter (``domain.metrics.store``), so the figures add up
across processes. A failure to write one is logged and never fails the caller. The API buffers them
(``domain.metrics.buffer``): a submission then costs no Redis round trip for its counter, which reaches
Redis within a quarter of a second, and at once when this process answers ``/metrics`` or stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

import redis

from config.settings import Settings
from domain.metrics import catalog
from domain.metrics.buffer import BufferedMetricStore
from domain.metrics.store import MetricBatch, MetricStore
from domain.status import JobStatus
from domain.storage.models import Job

log = logging.getLogger(__name__)


class _Labelled(Protocol):
    """Anything that names a job's tier, kind and model (a row, or a job just stored in bulk)."""

    @property
    def tier(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str: ...


class JobCounters:
    """Counts job events seen outside a worker's run."""

    def __init__(self, client: redis.Redis[Any], settings: Settings, *, buffered: bool = False) -> None:
        self.store: MetricStore = (
            BufferedMetricStore(client, settings.redis_prefix)
            if buffered
            else MetricStore(client, settings.redis_prefix)
        )
        self.labels = catalog.MetricLabels(settings.tiers)

    def flush(self) -> None:
        """Send what a buffered store holds now (nothing to do for a direct one)."""
        if isinstance(self.store, BufferedMetricStore):
            self.store.flush()

    def _labels(self, job: Job | _Labelled) -> tuple[str, str, str]:
        return self.labels.tier(job.tier), self.labels.kind(job.kind), self.labels.model(job.model)

    def submitted(self, jobs: Iterable[Job | _Labelled]) -> None:
        """Jobs just created (an idempotent replay is not a new job), in one round trip."""
        batch = MetricBatch()
        for job in jobs:
            batch.count(catalog.JOBS_SUBMITTED, self._labels(job))
        self._write(batch)

    def cancelled(self, jobs: Iterable[Job]) -> None:
        """Answered cancel requests; only jobs that are now cancelled are counted here."""
        batch = MetricBatch()
        for job in jobs:
            if job.status == JobStatus.cancelled.value:
                batch.count(catalog.JOBS_FINISHED, (*self._labels(job), JobStatus.cancelled.value))
        self._write(batch)

    def _write(self, batch: MetricBatch) -> None:
        try:
            self.store.write(batch, now=0.0)
        except (redis.RedisError, OSError) as exc:
            log.warning("job counter not written: %s", type(exc).__name__)
