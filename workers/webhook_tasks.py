"""The webhook Celery tasks and the per-process pieces behind them.

- ``batchery.deliver_webhook(delivery_id)`` runs on the queue ``batchery.webhooks``. It hands the id to
  this process's own small pool of delivery threads and returns at once, so a slow receiver never
  holds a worker thread that a tier's jobs need. The delivery's lease lives in the database: if the
  process dies mid-attempt, the lease expires and the delivery is due again.
- ``batchery.webhook_sweep`` runs from beat every ``BATCHERY_WEBHOOK_POLL_INTERVAL_SECONDS``: it sends
  the ids of deliveries whose ``next_attempt_at`` has come. Retries are scheduled that way, from the
  database, so they survive restarts and never wait in the broker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from domain.leases.keeper import LeaseKeeper
from domain.metrics.store import record_webhook_delivery
from domain.storage.models import utcnow
from domain.storage.sessions import session_scope
from domain.webhooks import repository as webhook_repository
from infra.celery_conf import DELIVER_WEBHOOK_TASK, WEBHOOK_QUEUE, WEBHOOK_SWEEP_TASK, send_by_name
from workers.safe_http import make_webhook_client
from workers.webhooks import WebhookDeliverer

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
BACKLOG_PER_THREAD = 4


class DeliveryPool:
    """A fixed set of daemon threads working through a bounded queue of delivery ids."""

    def __init__(self, deliver: Callable[[str], str], threads: int) -> None:
        self._deliver = deliver
        self._threads = threads
        self._queue: queue.Queue[str] = queue.Queue(maxsize=threads * BACKLOG_PER_THREAD)
        self._started = False
        self._lock = threading.Lock()

    def submit(self, delivery_id: str) -> bool:
        """Queue one delivery; False when the backlog is full (the poll sends it again later)."""
        self._start()
        try:
            self._queue.put_nowait(delivery_id)
        except queue.Full:
            return False
        return True

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for index in range(self._threads):
                threading.Thread(target=self._work, name=f"webhook-{index}", daemon=True).start()
            self._started = True

    def _work(self) -> None:
        while True:
            delivery_id = self._queue.get()
            try:
                self._deliver(delivery_id)
            except Exception:  # a broken attempt must not kill the thread; its lease will expire
                log.exception("webhook delivery %s raised", delivery_id)
            finally:
                self._queue.task_done()


class WebhookDispatcher:
    """Sends delivery ids to the webhook queue. A failed send is left for the poll, never raised."""

    def __init__(self, app: Celery, sessions: Callable[[], sessionmaker[Session]]) -> None:
        self.app = app
        self.sessions = sessions

    def send(self, delivery_id: str) -> bool:
        if send_by_name(self.app, DELIVER_WEBHOOK_TASK, delivery_id, WEBHOOK_QUEUE):
            return True
        self.forget_sent([delivery_id])
        return False

    def forget_sent(self, delivery_ids: list[str]) -> None:
        """Mark deliveries unsent, so that the next poll sends them."""
        with session_scope(self.sessions()) as session:
            webhook_repository.mark_dispatched(session, delivery_ids, None)


class WebhookWorker:
    """Per-process webhook resources, built on first use (after fork, never at import)."""

    def __init__(
        self,
        settings: Settings,
        app: Celery,
        sessions: Callable[[], sessionmaker[Session]],
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.settings = settings
        self.keeper = keeper
        self.dispatcher = WebhookDispatcher(app, sessions)
        self._sessions = sessions
        self._lock = threading.Lock()
        self._pool: DeliveryPool | None = None

    def pool(self) -> DeliveryPool:
        with self._lock:
            if self._pool is None:
                client = make_webhook_client(self.settings.webhook_timeout_seconds)
                counters = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
                prefix = self.settings.redis_prefix
                deliverer = WebhookDeliverer(
                    self.settings,
                    self._sessions(),
                    client,
                    on_result=lambda outcome: record_webhook_delivery(counters, outcome, prefix=prefix),
                    keeper=self.keeper,
                )
                self._pool = DeliveryPool(deliverer.deliver, self.settings.webhook_concurrency)
            return self._pool

    def sweep(self) -> dict[str, Any]:
        """Send every delivery that is due (a retry whose time has come, or a lost message)."""
        resend_before = utcnow() - timedelta(seconds=self.settings.resend_after_seconds)
        with session_scope(self._sessions()) as session:
            ids = webhook_repository.due_for_dispatch(session, resend_before=resend_before, limit=SWEEP_BATCH)
        sent = sum(self.dispatcher.send(delivery_id) for delivery_id in ids)
        return {"due": len(ids), "sent": sent}


def register_webhook_tasks(
    app: Celery,
    settings: Settings,
    sessions: Callable[[], sessionmaker[Session]],
    keeper: LeaseKeeper | None = None,
) -> WebhookWorker:
    """Register the two webhook tasks on ``app``; ``sessions`` gives the process's session factory, and
    ``keeper`` holds the deliveries' leases for the process's heartbeat."""
    worker = WebhookWorker(settings, app, sessions, keeper)

    @app.task(name=DELIVER_WEBHOOK_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def deliver_webhook(delivery_id: str) -> str:
        """Hand one delivery to this process's delivery threads."""
        if worker.pool().submit(delivery_id):
            return "queued"
        worker.dispatcher.forget_sent([delivery_id])
        return "busy"

    @app.task(name=WEBHOOK_SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def webhook_sweep() -> dict[str, Any]:
        """Send the deliveries that are due."""
        return worker.sweep()

    return worker
