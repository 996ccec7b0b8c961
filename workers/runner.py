"""Running one job: claim the lease, wait for the limiter, call the upstream, retry what can succeed
later, and store the outcome. The Celery task in ``workers.tasks`` only calls ``JobRunner.run``.

Every database write after the claim is fenced by the claim's token (``domain.repository``), so a
worker that lost its lease cannot overwrite a newer attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from config.settings import Settings
from config.tiers import Tier
from domain import repository
from domain.costing import Cost, actual_cost, estimate_cost, usage_columns
from domain.db import session_scope
from domain.repository import Claim
from domain.status import JobKind
from workers import upstream
from workers.limiter import Budget, Limiter, LimiterTimeout
from workers.ratelimit_headers import parse_rate_limit_headers
from workers.retry import RetryPolicy, is_retryable, next_delay, server_delay

log = logging.getLogger(__name__)

DEFAULT_429_PAUSE = 1.0


class LeaseLost(Exception):
    """The job's lease is gone (expired and re-claimed, or a cancel was requested)."""


@dataclass
class _Progress:
    """What one run has done so far, for the final write."""

    limiter_wait: float = 0.0
    last_error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)


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
        sleep: Callable[[float], None] = time.sleep,
        max_limiter_wait: float = 30.0,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.client = client
        self.limiter = limiter
        self.worker_id = worker_id
        self.requeue = requeue
        self.sleep = sleep
        self.max_limiter_wait = max_limiter_wait

    def run(self, job_id: str) -> str:
        """Run the job if it can be claimed; returns the outcome for logs and tests."""
        with session_scope(self.sessions) as session:
            claim = repository.claim(
                session, job_id, owner=self.worker_id, lease_seconds=self.settings.lease_seconds
            )
        if claim is None:
            return "skipped"
        tier = self.settings.tiers.tiers[claim.tier]
        if claim.attempt > tier.max_attempts:
            self._write(
                repository.fail,
                claim,
                error_type="max_attempts_exceeded",
                message=f"the job was started {claim.attempt - 1} times without finishing",
            )
            return "failed"
        return self._attempt_all(claim, tier)

    def _attempt_all(self, claim: Claim, tier: Tier) -> str:
        progress = _Progress()
        policy = _policy_for(tier)
        attempts_left = tier.max_attempts - claim.attempt + 1
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(attempts_left) | self._stop_when_policy_says_so(policy, progress),
            wait=_PolicyWait(policy, progress.started),
            sleep=self.sleep,
            before_sleep=lambda state: self._next_attempt(claim, state),
            reraise=True,
        )
        try:
            response = retrying(self._call_once, claim, tier, progress)
        except LimiterTimeout:
            return self._give_back(claim)
        except LeaseLost:
            return self._end_after_lost_lease(claim)
        except upstream.UpstreamError as error:
            return self._store_failure(claim, error, progress)
        columns = usage_columns(claim.kind, response.body.get("usage"), images=_image_count(response.body))
        stored = self._write(
            repository.complete,
            claim,
            result=response.body,
            usage=response.body.get("usage"),
            columns=columns,
            limiter_wait_ms=int(progress.limiter_wait * 1000),
        )
        return "succeeded" if stored else "lease_lost"

    def _stop_when_policy_says_so(self, policy: RetryPolicy, progress: _Progress) -> Any:
        def stop(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if error is None:
                return False
            elapsed = time.monotonic() - progress.started
            return next_delay(policy, error, state.attempt_number, elapsed) is None

        return stop

    def _next_attempt(self, claim: Claim, state: RetryCallState) -> None:
        """Before sleeping for a retry: count the attempt on the held lease, or stop if it is gone."""
        with session_scope(self.sessions) as session:
            if not repository.start_retry(session, claim, lease_seconds=self.settings.lease_seconds):
                raise LeaseLost()

    def _call_once(self, claim: Claim, tier: Tier, progress: _Progress) -> upstream.UpstreamResponse:
        provider = self.settings.providers[tier.provider]
        budget, cost = self._budget(claim, tier)
        if budget is not None and self.limiter is not None:
            progress.limiter_wait += self.limiter.wait_and_acquire(
                budget, cost, max_wait=self.max_limiter_wait, sleep=self.sleep
            )
        path = _upstream_path(claim.kind)
        try:
            response = upstream.call(self.client, provider, path, claim.request, timeout=tier.timeout_seconds)
        except upstream.UpstreamError as error:
            self._after_failure(budget, cost, error)
            raise
        if budget is not None and self.limiter is not None:
            used = actual_cost(claim.kind, response.body.get("usage"), images=_image_count(response.body))
            self.limiter.settle(budget, cost, used)
            self.limiter.observe(budget, parse_rate_limit_headers(response.headers))
        return response

    def _after_failure(self, budget: Budget | None, cost: Cost, error: upstream.UpstreamError) -> None:
        if budget is None or self.limiter is None:
            return
        self.limiter.settle(budget, cost, Cost(requests=1, tokens=0, images=0))
        if isinstance(error, upstream.UpstreamHTTPError) and error.status_code == 429:
            delay = server_delay(error)
            self.limiter.pause(budget, delay if delay is not None else DEFAULT_429_PAUSE)
            self.limiter.observe(budget, parse_rate_limit_headers(error.headers))

    def _budget(self, claim: Claim, tier: Tier) -> tuple[Budget | None, Cost]:
        cost = estimate_cost(claim.kind, claim.request, default_max_tokens=self.settings.default_max_tokens)
        limits = self.settings.tiers.limits_for(claim.model)
        if limits is None:
            return None, cost
        return Budget.for_model(tier.name, claim.model, limits, self.settings.tiers.burst_seconds), cost

    def _store_failure(self, claim: Claim, error: upstream.UpstreamError, progress: _Progress) -> str:
        self._write(
            repository.fail,
            claim,
            error_type=error.error_type,
            message=error.message,
            status_code=error.status_code,
            body=error.body,
            limiter_wait_ms=int(progress.limiter_wait * 1000),
        )
        return "failed"

    def _give_back(self, claim: Claim) -> str:
        """The limiter's wait is too long to hold a worker slot: put the job back on its queue."""
        released = self._write(repository.release, claim)
        if released and self.requeue is not None:
            self.requeue(claim.job_id, f"tier.{claim.tier}")
        return "requeued"

    def _end_after_lost_lease(self, claim: Claim) -> str:
        ended = self._write(repository.end_cancelled, claim)
        return "cancelled" if ended else "lease_lost"

    def _write(self, operation: Callable[..., bool], claim: Claim, **values: Any) -> bool:
        with session_scope(self.sessions) as session:
            return operation(session, claim, **values)


def _upstream_path(kind: str) -> str:
    return JobKind(kind).upstream_path


def _image_count(body: dict[str, Any]) -> int:
    data = body.get("data")
    if body.get("object") == "list" or not isinstance(data, list):
        return 0
    return len(data)
