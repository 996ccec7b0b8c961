"""Celery tasks. They are thin: each builds nothing itself and calls the modules that do the work.

Task arguments are ids only; nothing secret ever reaches a message, Flower or a log.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from typing import Any

import redis
from celery import Celery

from config.celery_conf import RUN_JOB_TASK, SWEEP_TASK
from config.settings import Settings
from domain import repository
from domain.db import make_engine, make_session_factory, session_scope
from domain.models import utcnow
from workers.limiter import RedisLimiter
from workers.runner import JobRunner
from workers.upstream import make_client

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


class WorkerState:
    """Per-process resources, built on first use (after fork, never at import)."""

    def __init__(self, settings: Settings, app: Celery, concurrency: int) -> None:
        self.settings = settings
        self.app = app
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._runner: JobRunner | None = None

    def runner(self) -> JobRunner:
        with self._lock:
            if self._runner is None:
                engine = make_engine(self.settings.database_url, pool_size=min(self.concurrency + 2, 64))
                client = make_client(max_connections=self.settings.upstream_max_connections)
                redis_client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10)
                self._runner = JobRunner(
                    self.settings,
                    make_session_factory(engine),
                    client,
                    RedisLimiter(redis_client, prefix=self.settings.redis_prefix),
                    worker_id=f"{socket.gethostname()}:{os.getpid()}",
                    requeue=self.send,
                )
            return self._runner

    def send(self, job_id: str, queue: str) -> None:
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)


def register_tasks(app: Celery, settings: Settings, *, concurrency: int = 16) -> WorkerState:
    state = WorkerState(settings, app, concurrency)

    @app.task(name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(job_id: str) -> str:
        """Run one job by id."""
        outcome = state.runner().run(job_id)
        log.info("job finished", extra={"job_id": job_id, "outcome": outcome})
        return outcome

    @app.task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def sweep() -> dict[str, Any]:
        """Re-send queued jobs whose message may be lost and jobs whose lease expired."""
        return sweep_once(state)

    return state


def sweep_once(state: WorkerState, *, resend_after: float | None = None) -> dict[str, Any]:
    settings = state.settings
    cutoff = utcnow() - timedelta(
        seconds=resend_after if resend_after is not None else settings.resend_after_seconds
    )
    with session_scope(state.runner().sessions) as session:
        rows = repository.jobs_to_resend(session, sent_before=cutoff, limit=SWEEP_BATCH)
    for job_id, tier in rows:
        state.send(job_id, settings.tiers.tiers[tier].queue if tier in settings.tiers.tiers else tier)
    return {"resent": len(rows)}
