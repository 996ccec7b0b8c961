"""Celery tasks. They are thin: each builds nothing itself and calls the modules that do the work.

Task arguments are ids only; nothing secret ever reaches a message, Flower or a log.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import redis
from celery import Celery, Task, signals
from celery.exceptions import Ignore

from config.prices import load_prices
from config.settings import Settings
from domain.budgets.settlement import settle_finished
from domain.jobs import dispatch_repository
from domain.leases import tables as leased_tables
from domain.leases.keeper import LeaseKeeper
from domain.status import JobStatus
from domain.storage.models import utcnow
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tokens.text import warm_up as warm_up_tokenizers
from infra.celery_conf import RUN_JOB_TASK, SWEEP_TASK
from infra.gc_freeze import freeze_long_lived
from workers.batch_tasks import BatchWorker, register_batch_tasks
from workers.completion_notice import CompletionNotice
from workers.dispatcher import BrokerSender, Dispatcher, DispatchPump
from workers.heartbeat import Heartbeat
from workers.limiter import RedisLimiter
from workers.provider_batch_tasks import ProviderBatchWorker, register_provider_batch_tasks
from workers.run_metrics import JobMetrics
from workers.runner import JobRunner
from workers.shutdown import ShutdownGate
from workers.stream_relay import StreamRelay
from workers.task_outcome import JobFailed, failure_of, was_cancelled
from workers.upstream import make_upstream_client
from workers.webhook_tasks import WebhookWorker, register_webhook_tasks

log = logging.getLogger(__name__)

BUDGET_SETTLE_CHUNK = 200
BUDGET_SETTLE_ROUNDS = 20


def default_pool_size(concurrency: int) -> int:
    """Database connections a worker process keeps: 8, plus one for every 50 threads, at most 24.

    A thread holds a connection only for its claim, its completion and the heartbeat's one statement
    per round, a few milliseconds a job, never during the upstream call: at 175 jobs/s with 400 threads
    in flight about one connection is busy on average. The pool may open as many again for a burst
    (``max_overflow``) and closes those when they are returned, so a process holds at most twice this
    and keeps at most this many idle: 9 for a worker serving every default tier (60 threads), 16 at 400.
    """
    return min(8 + concurrency // 50, 24)


class WorkerState:
    """Per-process resources, built on first use (after fork, never at import)."""

    webhooks: WebhookWorker
    batches: BatchWorker
    provider_batches: ProviderBatchWorker

    def __init__(self, settings: Settings, app: Celery, concurrency: int) -> None:
        self.settings = settings
        self.app = app
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._runner: JobRunner | None = None
        self._metrics: JobMetrics | None = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.gate = ShutdownGate()
        self.dispatch_tiers: list[str] | None = None
        self._dispatcher: Dispatcher | None = None
        self.pump = DispatchPump(self.dispatcher, interval=settings.dispatch_interval_seconds)
        # every lease the process holds (jobs, webhook deliveries, batch runs), renewed by one heartbeat
        self.keeper = LeaseKeeper(leased_tables.ALL)
        self.heartbeat = Heartbeat(
            self.keeper,
            lambda: self.runner().sessions,
            interval=settings.heartbeat_seconds,
            lease_seconds=settings.lease_seconds,
        )

    def runner(self) -> JobRunner:
        with self._lock:
            if self._runner is None:
                warm_up_tokenizers()  # each job's estimate counts exact tokens; load the encodings once
                pool_size = self.settings.worker_db_pool_size or default_pool_size(self.concurrency)
                engine = make_engine(self.settings.database_url, pool_size=pool_size, idle_ping=True)
                client = make_upstream_client(max_connections=self.settings.upstream_max_connections)
                redis_client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=10)
                self._runner = JobRunner(
                    self.settings,
                    make_session_factory(engine),
                    client,
                    RedisLimiter(redis_client, prefix=self.settings.redis_prefix),
                    worker_id=self.worker_id,
                    requeue=lambda _job_id, _queue: self.pump.nudge(),
                    notify_webhook=self.send_webhook,
                    notify_done=CompletionNotice(
                        redis_client, self.settings.redis_prefix, self.settings.openai_notice_ttl_seconds
                    ).publish,
                    sleep=self.gate.sleep,
                    stopping=self.gate.is_stopping,
                    keeper=self.keeper,
                    relay=StreamRelay(
                        redis_client, self.settings.redis_prefix, self.settings.openai_notice_ttl_seconds
                    ),
                )
            return self._runner

    def metrics(self) -> JobMetrics:
        """The process's job metrics (traces runs, writes their metrics, logs each job's line)."""
        with self._lock:
            if self._metrics is None:
                client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
                self._metrics = JobMetrics.from_settings(self.settings, client)
            return self._metrics

    def send_webhook(self, delivery_id: str) -> None:
        self.webhooks.dispatcher.send(delivery_id)

    def send(self, job_id: str, queue: str) -> None:
        self.app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)

    def dispatcher(self) -> Dispatcher:
        """The process's dispatcher (``workers.dispatcher``), for the tiers this worker serves."""
        sessions = self.runner().sessions
        with self._lock:
            if self._dispatcher is None:
                broker = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
                self._dispatcher = Dispatcher(
                    self.settings, sessions, BrokerSender(self.app), broker, tiers=self.dispatch_tiers
                )
            return self._dispatcher

    def begin_shutdown(self) -> None:
        """SIGTERM: calls in flight may finish within the grace period; nothing new starts."""
        self.gate.begin(self.settings.shutdown_grace_seconds, on_expired=self._grace_expired)
        self.pump.nudge()  # jobs given back now reach another worker sooner

    def _grace_expired(self) -> None:
        """The grace period is over: give back the jobs still held, then leave."""
        try:
            with session_scope(self.runner().sessions) as session:
                count = dispatch_repository.release_owned(session, self.worker_id)
            log.warning("grace period over: %d jobs still running were given back", count)
        finally:
            os._exit(1)


def register_tasks(
    app: Celery, settings: Settings, *, concurrency: int = 16, dispatch: bool = True
) -> WorkerState:
    """Register batchery's tasks on ``app``. With ``dispatch`` the worker also runs dispatcher rounds on a
    background thread; without it, a ``batchery dispatcher`` process must keep the tier queues filled."""
    state = WorkerState(settings, app, concurrency)
    state.webhooks = register_webhook_tasks(app, settings, lambda: state.runner().sessions, state.keeper)
    state.batches = register_batch_tasks(
        app,
        settings,
        lambda: state.runner().sessions,
        state.send_webhook,
        nudge_dispatcher=state.pump.nudge,
        keeper=state.keeper,
    )
    state.provider_batches = register_provider_batch_tasks(
        app,
        settings,
        lambda: state.runner().sessions,
        send_webhook=state.send_webhook,
        batches=lambda: state.batches,
        nudge_dispatcher=state.pump.nudge,
        keeper=state.keeper,
    )

    @app.task(  # type: ignore[untyped-decorator]
        name=RUN_JOB_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        throws=(JobFailed,),
    )
    def run_job(task: Task, job_id: str) -> str:
        """Run one job by id."""
        runner = state.runner()
        outcome = state.metrics().run(job_id, runner.run)
        claim = runner.last_claim()
        batch_id = claim.batch_id if claim is not None else None
        state.batches.job_finished(job_id, outcome, batch_id=batch_id, batch_known=claim is not None)
        state.pump.nudge()  # a place in the window is free: refill it now
        if outcome == JobStatus.failed.value:  # stored: now let Celery and Flower show FAILURE
            raise failure_of(runner.sessions, job_id)
        if outcome == JobStatus.cancelled.value or (
            outcome == "skipped" and claim is None and was_cancelled(runner.sessions, job_id)
        ):
            task.send_event("task-revoked", terminated=False, signum=None, expired=False)
            raise Ignore()  # acknowledged, and no later event overrides REVOKED in Flower
        return outcome

    @app.task(name=SWEEP_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def sweep() -> dict[str, Any]:
        """One dispatcher round: re-queue expired leases, re-send lost messages, top the windows up; then
        settle the budget reservations of finished jobs and batches (``domain.budgets.settlement``)."""
        rounds = state.dispatcher().run_once()
        prices, settled = load_prices(settings.prices_file), 0
        # in short transactions (the counters they update are the ones submissions reserve on), until
        # every finished holder is settled: up to 20 x 200 a sweep (400/s at the default 10 s)
        for _ in range(BUDGET_SETTLE_ROUNDS):
            with session_scope(state.runner().sessions) as session:
                done = settle_finished(session, prices, now=utcnow(), limit=BUDGET_SETTLE_CHUNK)
            settled += done
            if done < BUDGET_SETTLE_CHUNK:
                break
        answer: dict[str, Any] = {
            r.tier: {"requeued": r.requeued, "resent": r.resent, "sent": r.dispatched} for r in rounds
        }
        return {**answer, "budgets_settled": settled}

    def on_ready(sender: Any = None, **_: Any) -> None:
        queues = set(getattr(getattr(sender, "app", app).amqp.queues, "consume_from", None) or ())
        served = [name for name, tier in settings.tiers.tiers.items() if tier.queue in queues]
        state.dispatch_tiers = served or None
        state.runner()  # its pools, clients and encodings, made before the freeze below
        freeze_long_lived()
        state.heartbeat.start()
        if dispatch:
            state.pump.start()

    def on_shutting_down(**_: Any) -> None:
        state.begin_shutdown()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    return state
