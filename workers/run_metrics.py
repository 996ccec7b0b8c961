"""What one run of a job did, as metrics and as log lines.

``JobMetrics.run`` wraps ``JobRunner.run``: it opens a ``JobTrace`` for the run, and the runner adds
to it through the ``note_*`` functions (the claim, each limiter wait, each upstream call with its
latency and outcome, each retry, the usage). The functions find the open trace through a context
variable, so they cost nothing outside a traced run (in tests of the runner, say) and need no
argument threaded through the runner. When the run ends, everything it did is written to Redis in one
pipelined round trip (``domain.metrics.store``) and one line is logged with the job's id, tier, model,
kind, attempt, latency and outcome.

Metrics never fail a job: an error writing them is logged (at most once a minute) and dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from config.prices import PriceTable, load_prices
from config.settings import Settings
from config.tiers import TierConfig
from domain.jobs.repository import Claim
from domain.metrics import catalog
from domain.metrics.buffer import ERROR_LOG_INTERVAL, BufferedMetricStore
from domain.metrics.store import MetricBatch, MetricStore
from domain.tokens.costs import UsageAmounts, usage_cost
from domain.tokens.estimates import UsageColumns
from workers import upstream

log = logging.getLogger("batchery.jobs")

FINAL_OUTCOMES = {"succeeded", "failed", "cancelled"}


@dataclass
class JobTrace:
    """Everything one run of one job did, gathered in memory."""

    job_id: str
    started: float
    tier: str = ""
    kind: str = ""
    model: str = ""
    attempt: int = 0
    request: Mapping[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, float]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    usage: UsageColumns | None = None

    @property
    def claimed(self) -> bool:
        return bool(self.tier)


_current: ContextVar[JobTrace | None] = ContextVar("batchery_job_trace", default=None)


def note_claim(claim: Claim) -> None:
    """The run holds the job's lease: its tier, kind, model and attempt are known."""
    trace = _current.get()
    if trace is not None:
        trace.tier, trace.kind, trace.model = claim.tier, claim.kind, claim.model
        trace.attempt, trace.request = claim.attempt, claim.request


def note_limiter_wait(seconds: float) -> None:
    """The limiter held a call back ``seconds`` (0 when it let it through at once)."""
    trace = _current.get()
    if trace is not None:
        trace.waits.append(seconds)


def note_upstream(seconds: float, error: BaseException | None = None) -> None:
    """An upstream call answered (``error`` None) or failed after ``seconds``."""
    trace = _current.get()
    if trace is not None:
        trace.calls.append((upstream_outcome(error), seconds))


def note_retry(error: BaseException | None) -> None:
    """The call that just failed with ``error`` will be tried again."""
    trace = _current.get()
    if trace is None:
        return
    reason = upstream_outcome(error) if error is not None else catalog.OTHER
    trace.retries.append(reason)
    log.info(
        "retrying upstream call",
        extra={
            "job_id": trace.job_id,
            "tier": trace.tier,
            "model": trace.model,
            "attempt": trace.attempt + len(trace.retries) - 1,
            "latency_ms": round(trace.calls[-1][1] * 1000) if trace.calls else 0,
            "reason": reason,
        },
    )


def note_usage(columns: UsageColumns) -> None:
    """The call completed with this usage."""
    trace = _current.get()
    if trace is not None:
        trace.usage = columns


def upstream_outcome(error: BaseException | None) -> str:
    """The bounded label of an upstream call's outcome."""
    if error is None:
        return "ok"
    if isinstance(error, upstream.UpstreamHTTPError):
        status = error.status_code or 0
        if status == 429:
            return "429"
        return "4xx" if 400 <= status < 500 else "5xx" if status >= 500 else catalog.OTHER
    if isinstance(error, upstream.UpstreamTimeout):
        return "timeout"
    if isinstance(error, upstream.UpstreamConnectionError):
        return "connection_error"
    if isinstance(error, upstream.UpstreamMalformed):
        return "malformed"
    return catalog.OTHER


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


class JobMetrics:
    """Traces job runs and writes their metrics; one per worker process, shared by its threads."""

    def __init__(
        self,
        store: MetricStore,
        tiers: TierConfig,
        prices: PriceTable,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.labels = catalog.MetricLabels(tiers)
        self.prices = prices
        self.clock = clock
        self.monotonic = monotonic
        self._last_error_log = -ERROR_LOG_INTERVAL

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis[Any]) -> JobMetrics:
        """A worker's metrics: written every quarter of a second (``domain.metrics.buffer``), not per job."""
        store = BufferedMetricStore(client, settings.redis_prefix)
        return cls(store, settings.tiers, load_prices(settings.prices_file))

    def run(self, job_id: str, run: Callable[[str], str]) -> str:
        """Call ``run(job_id)`` inside a trace, then write its metrics and log its line."""
        trace = JobTrace(job_id, started=self.monotonic())
        token = _current.set(trace)
        outcome = "error"
        try:
            outcome = run(job_id)
            return outcome
        finally:
            _current.reset(token)
            self.finish(trace, outcome)

    def finish(self, trace: JobTrace, outcome: str) -> None:
        """Write the run's metrics and log its line (a run that claimed nothing has neither)."""
        if not trace.claimed:
            log.debug("job not claimed", extra={"job_id": trace.job_id, "outcome": outcome})
            return
        try:
            self.store.write(self.batch_for(trace, outcome), now=self.clock())
        except (redis.RedisError, OSError) as exc:
            self._report_write_error(exc)
        self._log(trace, outcome)

    def batch_for(self, trace: JobTrace, outcome: str) -> MetricBatch:
        """The metric increments of one traced run."""
        batch = MetricBatch()
        tier, model = self.labels.tier(trace.tier), self.labels.model(trace.model)
        kind = self.labels.kind(trace.kind)
        for call_outcome, seconds in trace.calls:
            batch.count(catalog.UPSTREAM_REQUESTS, (tier, model, call_outcome))
            batch.observe(catalog.UPSTREAM_LATENCY, (tier, model), seconds)
            batch.add_window(tier, model, "requests")
            if call_outcome == "429":
                batch.add_window(tier, model, "429")
            elif call_outcome != "ok":
                batch.add_window(tier, model, "errors")
        for seconds in trace.waits:
            batch.observe(catalog.LIMITER_WAIT, (tier, model), seconds)
            batch.add_window(tier, model, "waits")
            batch.add_window(tier, model, "wait_us", seconds * 1_000_000)
        for reason in trace.retries:
            batch.count(catalog.RETRIES, (tier, model, catalog.bounded(reason, catalog.UPSTREAM_OUTCOMES)))
        if outcome in FINAL_OUTCOMES:
            batch.count(catalog.JOBS_FINISHED, (tier, kind, model, outcome))
            batch.add_window(tier, model, outcome)
        else:
            batch.count(catalog.RUNS_INTERRUPTED, (tier, catalog.bounded(outcome, catalog.INTERRUPTIONS)))
        if trace.usage is not None:
            self._usage(batch, trace, tier, model, trace.usage)
        return batch

    def _usage(self, batch: MetricBatch, trace: JobTrace, tier: str, model: str, usage: UsageColumns) -> None:
        batch.count(catalog.TOKENS, (tier, model, "input"), usage.prompt_tokens)
        batch.count(catalog.TOKENS, (tier, model, "output"), usage.completion_tokens)
        batch.count(catalog.TOKENS, (tier, model, "cached_input"), usage.cached_tokens)
        batch.count(catalog.TOKENS, (tier, model, "reasoning"), usage.reasoning_tokens)
        batch.count(catalog.IMAGES, (tier, model), usage.images)
        batch.add_window(tier, model, "tokens", usage.total_tokens)
        batch.add_window(tier, model, "images", usage.images)
        amounts = UsageAmounts(
            requests=1,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            images=usage.images,
        )
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        cost = usage_cost(
            self.prices.price_on(trace.model, today),
            amounts,
            quality=_text(trace.request.get("quality")),
            size=_text(trace.request.get("size")),
        )
        batch.count(catalog.COST, (tier, model), float(cost.usd))

    def _log(self, trace: JobTrace, outcome: str) -> None:
        upstream_ms = sum(seconds for _, seconds in trace.calls) * 1000
        fields = {
            "job_id": trace.job_id,
            "tier": trace.tier,
            "model": trace.model,
            "kind": trace.kind,
            "attempt": trace.attempt + len(trace.retries),
            "latency_ms": round((self.monotonic() - trace.started) * 1000),
            "upstream_ms": round(upstream_ms),
            "limiter_wait_ms": round(sum(trace.waits) * 1000),
            "upstream_calls": len(trace.calls),
            "outcome": outcome,
        }
        level = logging.WARNING if outcome in ("failed", "error") else logging.INFO
        log.log(level, "job %s", outcome, extra=fields)

    def _report_write_error(self, exc: BaseException) -> None:
        now = self.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning("job metrics not written: %s", type(exc).__name__)
