"""One attempt's upstream call for a claimed job: wait for the rate limiter, call the upstream, settle
the limiter against the real usage and learn the provider's limits from its headers. The runner
(``workers.runner``) calls ``UpstreamCaller.call`` once per attempt, inside its retry loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from config.providers import Provider
from config.settings import Settings
from config.tiers import Tier
from domain.jobs.attempts import AttemptRecord
from domain.jobs.repository import Claim
from domain.jobs.streaming import stream_mode, streamed_body
from domain.status import JobKind
from domain.storage.models import utcnow
from domain.tokens.estimates import Cost, actual_cost, estimate_cost
from workers import run_metrics, upstream
from workers.buckets import Budget
from workers.learned_limits import LearnedLimits
from workers.limiter import Limiter
from workers.ratelimit_headers import parse_rate_limit_headers
from workers.retry import server_delay
from workers.shutdown import ShuttingDown
from workers.stream_relay import StreamRelay
from workers.upstream_stream import call_streamed

DEFAULT_429_PAUSE = 1.0


@dataclass
class Progress:
    """What one run has done so far, for the final write."""

    limiter_wait: float = 0.0
    last_error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    calls: int = 0
    call_started: datetime | None = None
    last_attempt: AttemptRecord | None = None


class UpstreamCaller:
    """The limiter and the upstream client of one worker process."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.Client,
        limiter: Limiter | None,
        *,
        sleep: Callable[[float], None],
        max_limiter_wait: float,
        stopping: Callable[[], bool] | None,
        relay: StreamRelay | None = None,
    ) -> None:
        self.settings = settings
        self.relay = relay
        self.client = client
        self.limiter = limiter
        self.sleep = sleep
        self.max_limiter_wait = max_limiter_wait
        self.stopping = stopping
        self.learned = LearnedLimits()

    def call(self, claim: Claim, tier: Tier, progress: Progress) -> upstream.UpstreamResponse:
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
        path = JobKind(claim.kind).upstream_path
        progress.calls += 1
        progress.call_started = utcnow()
        sent = time.monotonic()
        try:
            response = self._send(claim, provider, path, tier.timeout_seconds)
        except upstream.UpstreamError as error:
            run_metrics.note_upstream(time.monotonic() - sent, error)
            self._after_failure(claim, tier, budget, cost, error)
            raise
        run_metrics.note_upstream(time.monotonic() - sent)
        if budget is not None and self.limiter is not None:
            if tier.token_accounting == "usage":
                usage = response.body.get("usage")
                used = actual_cost(claim.kind, usage, images=image_count(response.body))
                self.limiter.settle(budget, cost, used)
            self._observe(claim, tier, budget, response.headers)
        return response

    def _send(self, claim: Claim, provider: Provider, path: str, timeout: float) -> upstream.UpstreamResponse:
        """One call: streamed (relayed and aggregated) when the job asked for a stream."""
        if stream_mode(claim.kind, claim.request) is None:
            return upstream.call(self.client, provider, path, claim.request, timeout=timeout)
        return call_streamed(
            self.client,
            provider,
            path,
            streamed_body(claim.kind, claim.request),
            kind=claim.kind,
            timeout=timeout,
            relay=self.relay.for_job(claim.job_id) if self.relay is not None else None,
        )

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


def image_count(body: dict[str, Any]) -> int:
    data = body.get("data")
    if body.get("object") == "list" or not isinstance(data, list):
        return 0
    return len(data)
