"""Running one job: claim the lease, wait for the limiter, call the upstream, retry what can succeed
later, and store the outcome. The Celery task in ``workers.tasks`` only calls ``JobRunner.run``.

Every database write after the claim is fenced by the claim's token (``domain.jobs.repository``), so a
worker that lost its lease cannot overwrite a newer attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar, cast

import httpx
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from config.settings import Settings
from config.tiers import Tier
from domain.jobs import attempts as attempt_log
from domain.jobs import repository
from domain.jobs.attempts import AttemptOutcome, AttemptRecord
from domain.jobs.repository import Claim
from domain.status import JobKind
from domain.storage.models import utcnow
from domain.storage.pg_hot_path import HotPath
from domain.storage.pg_pool import autocommit_engine
from domain.storage.sessions import connection_scope, session_scope
from domain.tokens.estimates import Cost, actual_cost, estimate_cost, usage_columns
from domain.webhooks import events
from workers import run_metrics, upstream
from workers.db_retry import retry_unavailable
from workers.learned_limits import LearnedLimits
from workers.limiter import Budget, Limiter, LimiterTimeout
from workers.ratelimit_headers import parse_rate_limit_headers
from workers.retry import RetryPolicy, is_retryable, next_delay, server_delay
from workers.shutdown import ShuttingDown
from workers.starvation import STARVED

log = logging.getLogger(__name__)

DEFAULT_429_PAUSE = 1.0
TERMINAL_WRITES = (repository.complete, repository.fail, repository.end_cancelled)
# what a fenced write answers: whether it landed (a bool) or the status it stored (None when it did not)
_Written = TypeVar("_Written")


class LeaseLost(Exception):
    """The job's lease is gone (expired and re-claimed, or a cancel was requested)."""


@dataclass
class _Progress:
    """What one run has done so far, for the final write."""

    limiter_wait: float = 0.0
    last_error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    calls: int = 0
    call_started: datetime | None = None
    last_attempt: AttemptRecord | None = None


class _PolicyWait(wait_base):
    """tenacity wait that asks the pure policy (server's delay first, then jittered backoff)."""

    def __init__(self, policy: RetryPolicy, started: float) -> None:
        self.policy = policy
        self.started = started

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if error is None:
            return 0.0
        delay = next_delay(self.policy, error, retry_state.attempt_number, time.monotonic() - self.started)
        return delay if delay is not None else 0.0


def _policy_for(tier: Tier) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=tier.max_attempts,
        base_seconds=tier.backoff_base_seconds,
        cap_seconds=tier.backoff_cap_seconds,
        deadline_seconds=tier.deadline_seconds,
    )


class JobRunner:
    """Runs jobs for one worker process."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: httpx.Client,
        limiter: Limiter | None,
        *,
        worker_id: str,
        requeue: Callable[[str, str], object] | None = None,
        notify_webhook: Callable[[str], object] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_limiter_wait: float = 30.0,
        stopping: Callable[[], bool] | None = None,
        hot_connections: int = 4,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        # the claim and a plain completion are one statement each: bare autocommit connections run them
        # without a session's bookkeeping or BEGIN and COMMIT
        engine = sessions.kw["bind"]
        self._autocommit = autocommit_engine(engine)
        self._dialect = engine.dialect.name
        # on PostgreSQL both run on autocommit connections of their own (``domain.storage.pg_hot_path``)
        self._hot = HotPath(engine, size=hot_connections) if self._dialect == "postgresql" else None
        self.client = client
        self.limiter = limiter
        self.worker_id = worker_id
        self.requeue = requeue
        self.notify_webhook = notify_webhook
        self.sleep = sleep
        self.max_limiter_wait = max_limiter_wait
        self.learned = LearnedLimits()
        self.stopping = stopping
        self._last = threading.local()

    def close(self) -> None:
        """Close the hot path's connections (the session factory's engine is the caller's)."""
        if self._hot is not None:
            self._hot.close()

    def last_claim(self) -> Claim | None:
        """The claim of this thread's latest ``run`` (None when it claimed nothing)."""
        claim: Claim | None = getattr(self._last, "claim", None)
        return claim

    def run(self, job_id: str) -> str:
        """Run the job if it can be claimed; returns the outcome for logs and tests."""
        self._last.claim = None
        token = repository.new_lease_token(self.worker_id)  # the same for every try of this claim
        claim = retry_unavailable(
            lambda: self._claim(job_id, token),
            deadline=self.settings.db_retry_seconds,
            what="claiming a job",
            sleep=self.sleep,
        )
        self._last.claim = claim
        if claim is None:
            log.info(
                "job skipped: already claimed or finished", extra={"job_id": job_id, "outcome": "skipped"}
            )
            return "skipped"
        run_metrics.note_claim(claim)
        tier = self.settings.tiers.tiers[claim.tier]
        if claim.attempt > tier.max_attempts:
            stored = self._write(
                repository.fail,
                claim,
                error_type="max_attempts_exceeded",
                message=f"the job was started {claim.attempt - 1} times without finishing",
            )
            return stored.value if stored is not None else "lease_lost"
        return self._attempt_all(claim, tier)

    def _claim(self, job_id: str, token: str) -> Claim | None:
        """Claim the job; an earlier attempt that left no log row is logged as lost (its worker died)."""
        lease = self.settings.lease_seconds
        if self._hot is not None:
            claim = self._hot.claim(job_id, owner=self.worker_id, lease_seconds=lease, token=token)
            if claim is not None and claim.attempt > 1:
                with connection_scope(self._autocommit) as connection:
                    attempt_log.record_lost_if_missing(connection, job_id, claim.attempt - 1)
            return claim
        with connection_scope(self._autocommit) as connection:
            claim = repository.claim(
                connection, job_id, owner=self.worker_id, lease_seconds=lease, token=token
            )
            if claim is not None and claim.attempt > 1:
                attempt_log.record_lost_if_missing(connection, job_id, claim.attempt - 1)
            return claim

    def _attempt_all(self, claim: Claim, tier: Tier) -> str:
        progress = _Progress()
        policy = _policy_for(tier)
        attempts_left = tier.max_attempts - claim.attempt + 1
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(attempts_left) | self._stop_when_policy_says_so(policy, progress),
            wait=_PolicyWait(policy, progress.started),
            sleep=self.sleep,
            before_sleep=lambda state: self._next_attempt(claim, state, progress),
            reraise=True,
        )
        try:
            response = retrying(self._call_once, claim, tier, progress)
        except LimiterTimeout as starved:  # back off first, so starved jobs do not spin through the backlog
            STARVED.back_off(starved, sleep=self.sleep, stopping=self.stopping)
            return self._give_back(claim)
        except ShuttingDown:
            return self._give_back(claim)
        except LeaseLost:
            return self._end_after_lost_lease(claim, progress)
        except upstream.UpstreamError as error:
            return self._store_failure(claim, error, progress)
        columns = usage_columns(claim.kind, response.body.get("usage"), images=_image_count(response.body))
        run_metrics.note_usage(columns)
        stored = self._write(
            repository.complete,
            claim,
            result=response.body,
            usage=response.body.get("usage"),
            columns=columns,
            limiter_wait_ms=int(progress.limiter_wait * 1000),
            attempt=self._attempt(
                claim, progress, AttemptOutcome.succeeded, status_code=response.status_code
            ),
        )
        return stored.value if stored is not None else "lease_lost"

    def _stop_when_policy_says_so(self, policy: RetryPolicy, progress: _Progress) -> Any:
        def stop(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if error is None:
                return False
            elapsed = time.monotonic() - progress.started
            return next_delay(policy, error, state.attempt_number, elapsed) is None

        return stop

    def _next_attempt(self, claim: Claim, state: RetryCallState, progress: _Progress) -> None:
        """Before sleeping for a retry: log the attempt and count the next one on the held lease, or stop
        if the lease is gone (or a cancel was requested)."""
        error = state.outcome.exception() if state.outcome else None
        run_metrics.note_retry(error)
        wait = state.next_action.sleep if state.next_action is not None else None
        failed = self._attempt(claim, progress, AttemptOutcome.failed, error=error)
        progress.last_attempt = failed
        retrying = replace(failed, outcome=AttemptOutcome.retrying, wait_before_next_seconds=wait)

        def write() -> None:
            with session_scope(self.sessions) as session:
                if not repository.start_retry(session, claim, lease_seconds=self.settings.lease_seconds):
                    raise LeaseLost()
                attempt_log.record(session, claim.job_id, retrying)

        retry_unavailable(write, deadline=self.settings.db_retry_seconds, what="starting a retry")
        progress.last_attempt = None

    def _attempt(
        self,
        claim: Claim,
        progress: _Progress,
        outcome: AttemptOutcome,
        *,
        status_code: int | None = None,
        error: BaseException | None = None,
    ) -> AttemptRecord:
        """The log row of the attempt just made."""
        error_type: str | None = None
        message: str | None = None
        if isinstance(error, upstream.UpstreamError):
            status_code, error_type, message = error.status_code, error.error_type, error.message
        elif error is not None:
            error_type, message = type(error).__name__, str(error)
        return AttemptRecord(
            number=claim.attempt + progress.calls - 1,
            outcome=outcome,
            started_at=progress.call_started,
            finished_at=utcnow(),
            status_code=status_code,
            error_type=error_type,
            error=message,
        )

    def _call_once(self, claim: Claim, tier: Tier, progress: _Progress) -> upstream.UpstreamResponse:
        if self.stopping is not None and self.stopping():
            raise ShuttingDown()
        provider = self.settings.providers[tier.provider]
        budget, cost = self._budget(claim, tier)
        if budget is not None and self.limiter is not None:
            waited = self.limiter.wait_and_acquire(
                budget, cost, max_wait=self.max_limiter_wait, sleep=self.sleep
            )
            progress.limiter_wait += waited
            run_metrics.note_limiter_wait(waited)
        path = _upstream_path(claim.kind)
        progress.calls += 1
        progress.call_started = utcnow()
        sent = time.monotonic()
        try:
            response = upstream.call(self.client, provider, path, claim.request, timeout=tier.timeout_seconds)
        except upstream.UpstreamError as error:
            run_metrics.note_upstream(time.monotonic() - sent, error)
            self._after_failure(claim, tier, budget, cost, error)
            raise
        run_metrics.note_upstream(time.monotonic() - sent)
        if budget is not None and self.limiter is not None:
            if tier.token_accounting == "usage":
                usage = response.body.get("usage")
                used = actual_cost(claim.kind, usage, images=_image_count(response.body))
                self.limiter.settle(budget, cost, used)
            self._observe(claim, tier, budget, response.headers)
        return response

    def _observe(self, claim: Claim, tier: Tier, budget: Budget, headers: Mapping[str, str]) -> None:
        """Learn the upstream's real limits and let its remaining budget correct the bucket."""
        assert self.limiter is not None
        state = parse_rate_limit_headers(headers)
        configured = self._configured_budget(claim, tier)
        if configured is not None:
            self.learned.learn(configured, state)
        self.limiter.observe(budget, state)

    def _after_failure(
        self, claim: Claim, tier: Tier, budget: Budget | None, cost: Cost, error: upstream.UpstreamError
    ) -> None:
        if budget is None or self.limiter is None:
            return
        rejected = isinstance(error, upstream.UpstreamHTTPError) and error.status_code == 429
        if rejected or tier.token_accounting == "usage":
            self.limiter.settle(budget, cost, Cost(requests=1, tokens=0, images=0))
        if rejected:
            assert isinstance(error, upstream.UpstreamHTTPError)
            delay = server_delay(error)
            self.limiter.pause(budget, delay if delay is not None else DEFAULT_429_PAUSE)
            self._observe(claim, tier, budget, error.headers)

    def _budget(self, claim: Claim, tier: Tier) -> tuple[Budget | None, Cost]:
        cost = estimate_cost(claim.kind, claim.request, default_max_tokens=self.settings.default_max_tokens)
        configured = self._configured_budget(claim, tier)
        return (self.learned.apply(configured) if configured is not None else None), cost

    def _configured_budget(self, claim: Claim, tier: Tier) -> Budget | None:
        limits = self.settings.tiers.limits_for(claim.model)
        if limits is None:
            return None
        return Budget.for_model(tier.name, claim.model, limits, self.settings.tiers.burst_seconds)

    def _store_failure(self, claim: Claim, error: upstream.UpstreamError, progress: _Progress) -> str:
        stored = self._write(
            repository.fail,
            claim,
            error_type=error.error_type,
            message=error.message,
            status_code=error.status_code,
            body=error.body,
            limiter_wait_ms=int(progress.limiter_wait * 1000),
            attempt=self._attempt(claim, progress, AttemptOutcome.failed, error=error),
        )
        return stored.value if stored is not None else "lease_lost"

    def _give_back(self, claim: Claim) -> str:
        """The limiter's wait is too long to hold a worker slot, or the worker is shutting down, and the
        current attempt has not called the upstream: uncount it and put the job back in the backlog, for
        the dispatcher to send again."""
        released = self._write(repository.release, claim, undo_attempt=True)
        if released and self.requeue is not None:
            self.requeue(claim.job_id, f"tier.{claim.tier}")
        return "requeued"

    def _end_after_lost_lease(self, claim: Claim, progress: _Progress) -> str:
        ended = self._write(repository.end_cancelled, claim, attempt=progress.last_attempt)
        return "cancelled" if ended else "lease_lost"

    def _write(
        self,
        operation: Callable[..., _Written],
        claim: Claim,
        *,
        attempt: AttemptRecord | None = None,
        **values: Any,
    ) -> _Written:
        """Run one fenced write (with the attempt's log row, when given). A terminal one also records the
        job's webhook event in the same transaction (an outbox), and the delivery is sent once it has
        committed. A database outage is ridden out (``workers.db_retry``), never stored as a failure."""

        logs_attempt_itself = operation is repository.complete  # in one statement on Postgres
        # nothing else joins that statement's transaction: it runs alone, on the hot path
        alone = (
            logs_attempt_itself and not claim.has_webhook and attempt is not None and self._hot is not None
        )

        def write() -> tuple[_Written, str | None]:
            if alone and self._hot is not None and attempt is not None:
                return cast(_Written, self._hot.complete(claim, attempt=attempt, **values)), None
            delivery: str | None = None
            with session_scope(self.sessions) as session:
                if logs_attempt_itself:
                    done = operation(session, claim, attempt=attempt, **values)
                else:
                    done = operation(session, claim, **values)
                    if done and attempt is not None:
                        attempt_log.record(session, claim.job_id, attempt)
                if done and operation in TERMINAL_WRITES and claim.has_webhook:
                    delivery = events.record_job_event(session, claim.job_id, self.settings)
            return done, delivery

        done, delivery_id = retry_unavailable(
            write, deadline=self.settings.db_retry_seconds, what=f"storing job {claim.job_id}"
        )
        if delivery_id is not None and self.notify_webhook is not None:
            self.notify_webhook(delivery_id)
        return done


def _upstream_path(kind: str) -> str:
    return JobKind(kind).upstream_path


def _image_count(body: dict[str, Any]) -> int:
    data = body.get("data")
    if body.get("object") == "list" or not isinstance(data, list):
        return 0
    return len(data)
