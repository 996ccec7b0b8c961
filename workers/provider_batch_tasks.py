"""The provider batch task, on the control queue: ``batchery.provider_batch_tick()``, from beat every
``BATCHERY_PROVIDER_BATCH_POLL_SECONDS``, runs one ``ProviderBatchRunner.tick``: deferred jobs cancelled
while waiting end, due groups are flushed into provider batches, and every provider batch whose next
step is due moves on.

After a settlement commits, each job ended is announced as a live run's end is: its webhook delivery
is sent, its completion notice published (for a caller waiting behind a drop-in call), and its batch
finalized once it has no unfinished job (``workers.batch_tasks``). Jobs handed back to live execution
wake the process's dispatcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from config.prices import load_prices
from config.settings import Settings
from domain.leases.keeper import LeaseKeeper
from domain.metrics.store import MetricStore
from domain.status import JobStatus
from infra.celery_conf import PROVIDER_BATCH_TICK_TASK
from workers.batch_tasks import BatchWorker
from workers.completion_notice import CompletionNotice
from workers.provider_batch_metrics import SettlementMetrics
from workers.provider_batch_runner import Notifier, ProviderBatchRunner
from workers.upstream import make_upstream_client


class ProviderBatchWorker:
    """The provider batch runner of one worker process, built on first use (after fork)."""

    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], sessionmaker[Session]],
        *,
        send_webhook: Callable[[str], object],
        batches: Callable[[], BatchWorker],
        nudge_dispatcher: Callable[[], object],
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._send_webhook = send_webhook
        self._batches = batches
        self._nudge = nudge_dispatcher
        self._keeper = keeper
        self._lock = threading.Lock()
        self._runner: ProviderBatchRunner | None = None
        self._notice: CompletionNotice | None = None

    def runner(self) -> ProviderBatchRunner:
        with self._lock:
            if self._runner is None:
                client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10)
                self._notice = CompletionNotice(
                    client, self.settings.redis_prefix, self.settings.openai_notice_ttl_seconds
                )
                metrics = SettlementMetrics(
                    MetricStore(client, self.settings.redis_prefix),
                    self.settings.tiers,
                    load_prices(self.settings.prices_file),
                )
                self._runner = ProviderBatchRunner(
                    self.settings,
                    self._sessions(),
                    make_upstream_client(max_connections=16),
                    notifier=Notifier(
                        send_webhook=self._send_webhook,
                        job_done=self._job_done,
                        jobs_to_live=lambda _jobs: self._nudge(),
                        settled=metrics.write,
                    ),
                    keeper=self._keeper,
                )
            return self._runner

    def _job_done(self, job_id: str, batch_id: str | None) -> None:
        if self._notice is not None:
            self._notice.publish(job_id, None)
        outcome = JobStatus.succeeded.value  # any final status: the batch check is the same
        self._batches().job_finished(job_id, outcome, batch_id=batch_id, batch_known=True)

    def tick(self) -> dict[str, Any]:
        report = self.runner().tick()
        return {"opened": len(report.opened), "advanced": report.advanced, "settled": report.settled}


def register_provider_batch_tasks(
    app: Celery,
    settings: Settings,
    sessions: Callable[[], sessionmaker[Session]],
    *,
    send_webhook: Callable[[str], object],
    batches: Callable[[], BatchWorker],
    nudge_dispatcher: Callable[[], object],
    keeper: LeaseKeeper | None = None,
) -> ProviderBatchWorker:
    """Register ``batchery.provider_batch_tick``."""
    worker = ProviderBatchWorker(
        settings,
        sessions,
        send_webhook=send_webhook,
        batches=batches,
        nudge_dispatcher=nudge_dispatcher,
        keeper=keeper,
    )

    @app.task(name=PROVIDER_BATCH_TICK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def provider_batch_tick() -> dict[str, Any]:
        """Flush waiting groups into provider batches and move each provider batch along."""
        return worker.tick()

    return worker
