"""The batch Celery tasks, all on the control queue; each calls ``domain.batches.lifecycle`` and sends ids.

- ``batchery.ingest_batch(batch_id)``: validate the input file and fan it out into jobs in the
  database backlog, then nudge this process's dispatcher, which sends them as the windows have room.
- ``batchery.finalize_batch(batch_id)``: write the output and error files once no job is unfinished.
- ``batchery.batch_tick()``: from beat, every ``BATCHERY_SWEEP_INTERVAL_SECONDS``: expiry, lost
  ingests, missed finalizations and expired files.

``BatchWorker.job_finished`` is called after every ``run_job``: when the job belonged to a batch that
has no unfinished job left, it sends the finalize task. Several last jobs finishing at once may send it
more than once; the batch's lease lets one run through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from domain.batches import repository as batch_repository
from domain.batches.lifecycle import run_finalize, run_ingest, run_tick
from domain.errors import Unavailable
from domain.leases.keeper import LeaseKeeper
from domain.storage.models import utcnow
from domain.storage.sessions import session_scope
from infra.celery_conf import (
    BATCH_TICK_TASK,
    CONTROL_QUEUE,
    FINALIZE_BATCH_TASK,
    INGEST_BATCH_TASK,
    send_by_name,
)

log = logging.getLogger(__name__)


class BatchWorker:
    """What the batch tasks of one worker process use: sessions, the broker, webhooks, the dispatcher."""

    def __init__(
        self,
        app: Celery,
        settings: Settings,
        sessions: Callable[[], sessionmaker[Session]],
        send_webhook: Callable[[str], object],
        nudge_dispatcher: Callable[[], object],
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.app = app
        self.keeper = keeper
        self.settings = settings
        self._sessions = sessions
        self._send_webhook = send_webhook
        self._nudge_dispatcher = nudge_dispatcher

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self._sessions()

    def send(self, task: str, batch_id: str) -> None:
        send_by_name(self.app, task, batch_id, CONTROL_QUEUE)  # a lost send is retried by the tick

    def notify(self, deliveries: list[str]) -> None:
        for delivery_id in deliveries:
            self._send_webhook(delivery_id)

    def ingest(self, batch_id: str) -> dict[str, Any]:
        outcome, step = run_ingest(self.sessions, batch_id, self.settings, keeper=self.keeper)
        self.notify(step.deliveries)
        if outcome.status == "in_progress":
            self._nudge_dispatcher()
        return {"status": outcome.status, "jobs": outcome.total, "errors": len(outcome.errors)}

    def finalize(self, batch_id: str) -> str | None:
        step = run_finalize(self.sessions, batch_id, self.settings, keeper=self.keeper)
        self.notify(step.deliveries)
        return step.status

    def tick(self) -> dict[str, Any]:
        result = run_tick(self.sessions, self.settings, now=utcnow())
        self.notify(result.deliveries)
        for batch_id in result.to_ingest:
            self.send(INGEST_BATCH_TASK, batch_id)
        for batch_id in result.to_finalize:
            self.send(FINALIZE_BATCH_TASK, batch_id)
        return {
            "ingest": len(result.to_ingest),
            "finalize": len(result.to_finalize),
            "expired": result.expired,
            "purged_files": result.purged_files,
        }

    def job_finished(
        self, job_id: str, outcome: str, *, batch_id: str | None = None, batch_known: bool = False
    ) -> None:
        """After a job's run: send the finalize task if that was its batch's last unfinished job.
        ``batch_known`` says ``batch_id`` is the job's batch (from its claim), so it is not read again,
        and a job outside any batch costs nothing."""
        if outcome == "requeued" or (batch_known and batch_id is None):
            return
        try:
            with session_scope(self.sessions) as session:
                if not batch_known:
                    batch_id = batch_repository.batch_of_job(session, job_id)
                due = batch_id is not None and not batch_repository.has_unfinished_jobs(session, batch_id)
        except Unavailable:  # the job itself is stored; the periodic tick finds the batch later
            log.warning("could not check the batch of job %s: the database is unavailable", job_id)
            return
        if due and batch_id is not None:
            self.send(FINALIZE_BATCH_TASK, batch_id)


def register_batch_tasks(
    app: Celery,
    settings: Settings,
    sessions: Callable[[], sessionmaker[Session]],
    send_webhook: Callable[[str], object],
    nudge_dispatcher: Callable[[], object],
    keeper: LeaseKeeper | None = None,
) -> BatchWorker:
    """Register the batch tasks; ``nudge_dispatcher`` asks this process's dispatcher for a round, and
    ``keeper`` holds the batch runs' leases for the process's heartbeat."""
    worker = BatchWorker(app, settings, sessions, send_webhook, nudge_dispatcher, keeper)

    @app.task(name=INGEST_BATCH_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def ingest_batch(batch_id: str) -> dict[str, Any]:
        """Validate a batch's input file and fan it out into jobs."""
        return worker.ingest(batch_id)

    @app.task(name=FINALIZE_BATCH_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def finalize_batch(batch_id: str) -> str | None:
        """Write a finished batch's output and error files and end it."""
        return worker.finalize(batch_id)

    @app.task(name=BATCH_TICK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def batch_tick() -> dict[str, Any]:
        """Expiry, lost ingests, missed finalizations and expired files."""
        return worker.tick()

    return worker
