"""Every Prometheus metric batchery exports: name, help, labels, and the values each label may take.

Counters and histograms are written to Redis by whichever process sees the event (the API for
submissions and cancellations of queued jobs, workers for everything about a run, the webhook sender
for deliveries) and read by the API's ``/metrics`` (``domain.metrics.store`` says how). Gauges are
computed when ``/metrics`` is scraped.

Label values are bounded: tiers and models come from the tiers file (anything else is ``other``),
kinds from ``JobKind``, and outcomes, statuses and reasons from the fixed sets below. No label ever
holds a job id, a URL or a message, and a tenant (or API key id) only on the budget gauges: one series
per budget an operator set (``domain.budgets``), so their number is bounded by configuration too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from config.tiers import TierConfig
from domain.status import JobKind

OTHER = "other"
"""The label value that every unknown tier, model or kind collapses to."""

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

FINISHED_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
INTERRUPTIONS = frozenset({"requeued", "lease_lost", "error"})
UPSTREAM_OUTCOMES = frozenset({"ok", "429", "4xx", "5xx", "timeout", "connection_error", "malformed", OTHER})
TOKEN_TYPES = frozenset({"input", "output", "cached_input", "reasoning"})
WEBHOOK_OUTCOMES = frozenset({"succeeded", "retrying", "failed", OTHER})


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family. Counters are stored as integers: ``scale`` stored units make one unit."""

    name: str
    help: str
    kind: Literal["counter", "histogram", "gauge"]
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    scale: int = 1


JOBS_SUBMITTED = Family(
    "batchery_jobs_submitted", "Jobs accepted by the API.", "counter", ("tier", "kind", "model")
)
JOBS_FINISHED = Family(
    "batchery_jobs_finished",
    "Jobs that reached a final status (succeeded, failed or cancelled).",
    "counter",
    ("tier", "kind", "model", "status"),
)
RUNS_INTERRUPTED = Family(
    "batchery_job_runs_interrupted",
    "Runs that ended without a final status: requeued (limiter wait too long), lease_lost, error.",
    "counter",
    ("tier", "reason"),
)
UPSTREAM_REQUESTS = Family(
    "batchery_upstream_requests",
    "Upstream calls by outcome: ok, 429, 4xx, 5xx, timeout, connection_error, malformed.",
    "counter",
    ("tier", "model", "outcome"),
)
RETRIES = Family(
    "batchery_retries",
    "Upstream calls retried, by the outcome that caused the retry.",
    "counter",
    ("tier", "model", "reason"),
)
TOKENS = Family(
    "batchery_tokens",
    "Tokens used by completed calls: input, output, and their parts cached_input and reasoning.",
    "counter",
    ("tier", "model", "type"),
)
IMAGES = Family("batchery_images", "Images generated.", "counter", ("tier", "model"))
COST = Family(
    "batchery_cost_usd",
    "Cost of completed calls in US dollars, from the price table at the time they finished.",
    "counter",
    ("tier", "model"),
    scale=1_000_000_000,
)
WEBHOOK_DELIVERIES = Family(
    "batchery_webhook_deliveries",
    "Webhook delivery attempts by outcome: succeeded, retrying (another attempt is scheduled), failed.",
    "counter",
    ("outcome",),
)
UPSTREAM_LATENCY = Family(
    "batchery_upstream_latency_seconds",
    "Time from sending an upstream call to its answer (or error).",
    "histogram",
    ("tier", "model"),
    buckets=LATENCY_BUCKETS,
    scale=1_000_000,
)
LIMITER_WAIT = Family(
    "batchery_limiter_wait_seconds",
    "Time a call waited for the rate limiter before it was sent.",
    "histogram",
    ("tier", "model"),
    buckets=WAIT_BUCKETS,
    scale=1_000_000,
)
QUEUE_DEPTH = Family(
    "batchery_queue_depth", "Messages waiting in the tier's broker queue.", "gauge", ("tier",)
)
JOBS_IN_FLIGHT = Family(
    "batchery_jobs_in_flight",
    "Jobs running now (holding a lease; deferred jobs are batchery_deferred_jobs).",
    "gauge",
    ("tier",),
)
REQUESTS_REFUSED = Family(
    "batchery_requests_refused",
    "Requests the API refused at once with 503 overloaded, by lane: write or read (api.admission).",
    "counter",
    ("lane",),
)
REFUSALS_WINDOW_TIER = "api"
"""Refusals also go to the 10-second window (``domain.metrics.store``) as ``api|<lane>|refused``, so
``batchery top`` can show the last minute's."""
BACKLOG_JOBS = Family(
    "batchery_backlog_jobs", "Jobs queued in the database (the backlog, sent or not).", "gauge", ("tier",)
)
PROVIDER_BATCH_JOBS = Family(
    "batchery_provider_batch_jobs",
    "Jobs settled from a provider batch, by what became of them: complete, fail, live (handed back to "
    "live execution), cancel.",
    "counter",
    ("tier", "model", "outcome"),
)
PROVIDER_BATCH_OUTCOMES = frozenset({"complete", "fail", "live", "cancel"})
BATCH_SAVINGS = Family(
    "batchery_batch_savings_usd",
    "What the calls run through the provider's Batch API would have cost more live, in US dollars.",
    "counter",
    ("tier", "model"),
    scale=1_000_000_000,
)
PROVIDER_BATCHES_IN_FLIGHT = Family(
    "batchery_provider_batches_in_flight",
    "Provider batches not yet settled (pending upload, uploaded, or running at the provider).",
    "gauge",
    (),
)
DEFERRED_JOBS = Family(
    "batchery_deferred_jobs",
    "Jobs on the provider batch path: waiting for a provider batch or held by one.",
    "gauge",
    ("tier",),
)

STORED_FAMILIES = (
    JOBS_SUBMITTED,
    JOBS_FINISHED,
    RUNS_INTERRUPTED,
    UPSTREAM_REQUESTS,
    RETRIES,
    TOKENS,
    IMAGES,
    COST,
    WEBHOOK_DELIVERIES,
    UPSTREAM_LATENCY,
    LIMITER_WAIT,
    REQUESTS_REFUSED,
    PROVIDER_BATCH_JOBS,
    BATCH_SAVINGS,
)
BUDGET_LABELS = ("tenant", "key", "period")
"""``key`` is ``*`` for the tenant's own budget, else the API key's id; ``period`` is day or month."""
BUDGET_WHOLE_TENANT = "*"
BUDGET_LIMIT_USD = Family(
    "batchery_budget_limit_usd",
    "A budget's USD limit for the current UTC day or month.",
    "gauge",
    BUDGET_LABELS,
)
BUDGET_SPENT_USD = Family(
    "batchery_budget_spent_usd",
    "USD spent against a budget in the current UTC day or month (settled jobs and batches).",
    "gauge",
    BUDGET_LABELS,
)
BUDGET_RESERVED_USD = Family(
    "batchery_budget_reserved_usd",
    "USD reserved against a budget by admitted work not yet settled (its estimate).",
    "gauge",
    BUDGET_LABELS,
)
BUDGET_LIMIT_TOKENS = Family(
    "batchery_budget_limit_tokens",
    "A budget's token limit for the current UTC day or month.",
    "gauge",
    BUDGET_LABELS,
)
BUDGET_SPENT_TOKENS = Family(
    "batchery_budget_spent_tokens",
    "Tokens spent against a budget in the current period.",
    "gauge",
    BUDGET_LABELS,
)
BUDGET_RESERVED_TOKENS = Family(
    "batchery_budget_reserved_tokens",
    "Tokens reserved against a budget by admitted work not yet settled.",
    "gauge",
    BUDGET_LABELS,
)
BUDGET_FAMILIES = (
    BUDGET_LIMIT_USD,
    BUDGET_SPENT_USD,
    BUDGET_RESERVED_USD,
    BUDGET_LIMIT_TOKENS,
    BUDGET_SPENT_TOKENS,
    BUDGET_RESERVED_TOKENS,
)
SCRAPE_FAMILIES = (
    QUEUE_DEPTH,
    JOBS_IN_FLIGHT,
    BACKLOG_JOBS,
    PROVIDER_BATCHES_IN_FLIGHT,
    DEFERRED_JOBS,
    *BUDGET_FAMILIES,
)


def bounded(value: str, allowed: frozenset[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``other``."""
    return value if value in allowed else OTHER


class MetricLabels:
    """Turns tier, model and kind names into bounded label values, from the tiers file."""

    def __init__(self, tiers: TierConfig) -> None:
        self._tiers = frozenset(tiers.tiers)
        self._models = frozenset(tiers.known_models)
        self._configured_model = tiers.configured_model
        self._kinds = frozenset(kind.value for kind in JobKind)

    def tier(self, name: str) -> str:
        return name if name in self._tiers else OTHER

    def model(self, name: str) -> str:
        """The model, or the model of the tiers file it is a snapshot or alias of, else ``other``."""
        if name in self._models:
            return name
        return self._configured_model(name) or OTHER

    def kind(self, name: str) -> str:
        return name if name in self._kinds else OTHER
