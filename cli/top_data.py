"""What ``batchery top`` shows, read from Redis and the database: one ``TierView`` per tier.

- queue: messages waiting in the tier's broker queue (``LLEN``);
- backlog and in flight: the tier's queued and running jobs in the database;
- per model, over the last minute (``domain.metrics.store``'s 10-second window): requests and tokens
  used against the model's RPM and TPM, the average limiter wait, 429s, other upstream errors and
  failed jobs; and whether the model's limiter bucket is paused after a 429, from the limiter itself;
- per spend budget (``domain.budgets``): USD and tokens spent and reserved against its limits, in the
  current UTC day and month (``collect_budgets``).
- the provider Batch API path: provider batches in flight, deferred jobs, and the money it saved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from config.tiers import TierConfig
from domain.budgets.status import PeriodSpend, budget_status
from domain.metrics.catalog import BATCH_SAVINGS, MetricLabels
from domain.metrics.store import MetricStore
from domain.metrics.tier_counts import DEFERRED, tier_counts
from domain.status import JobStatus
from domain.storage.models import utcnow
from domain.storage.sessions import session_scope
from workers.buckets import Budget
from workers.limiter import Limiter

WINDOW_NAMES = ("requests", "tokens", "waits", "wait_us", "429", "errors", "failed")


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model over the last minute."""

    model: str
    budget: str
    rpm_used: float
    rpm_limit: int
    tpm_used: float
    tpm_limit: int
    waits: float
    wait_ms_total: float
    rate_limited: float
    errors: float
    failed: float
    paused_seconds: float = 0.0

    @property
    def wait_ms(self) -> float:
        """The average limiter wait of the last minute's calls."""
        return self.wait_ms_total / self.waits if self.waits else 0.0


@dataclass(frozen=True, slots=True)
class TierView:
    """One tier now, and its models over the last minute."""

    tier: str
    queue: int
    backlog: int
    in_flight: int
    models: list[ModelView] = field(default_factory=list)

    def _budgets(self) -> dict[str, ModelView]:
        return {model.budget: model for model in self.models}

    @property
    def rpm_used(self) -> float:
        return sum(model.rpm_used for model in self.models)

    @property
    def rpm_limit(self) -> int:
        """Models sharing a budget share its limit, so each budget is counted once."""
        return sum(model.rpm_limit for model in self._budgets().values())

    @property
    def tpm_used(self) -> float:
        return sum(model.tpm_used for model in self.models)

    @property
    def tpm_limit(self) -> int:
        return sum(model.tpm_limit for model in self._budgets().values())

    @property
    def wait_ms(self) -> float:
        waits = sum(model.waits for model in self.models)
        return sum(model.wait_ms_total for model in self.models) / waits if waits else 0.0

    @property
    def rate_limited(self) -> float:
        return sum(model.rate_limited for model in self.models)

    @property
    def errors(self) -> float:
        return sum(model.errors for model in self.models)

    @property
    def failed(self) -> float:
        return sum(model.failed for model in self.models)


def collect(
    tiers: TierConfig,
    store: MetricStore,
    sessions: sessionmaker[Session],
    limiter: Limiter | None,
    now: Callable[[], float],
) -> list[TierView]:
    """Every tier of ``tiers``, in file order."""
    depths = store.queue_lengths([tier.queue for tier in tiers.tiers.values()])
    with session_scope(sessions) as session:
        counts = tier_counts(session)
    window = store.window(now())
    labels = MetricLabels(tiers)
    views = []
    for tier in tiers.tiers.values():
        models = []
        for model, limits in tier.models.items():
            budget = Budget.for_model(tier.name, model, limits, tiers.burst_seconds)
            key = (labels.tier(tier.name), labels.model(model))
            used = {name: window.get((*key, name), 0.0) for name in WINDOW_NAMES}
            paused = limiter.snapshot(budget)["paused_seconds"] if limiter is not None else 0.0
            models.append(
                ModelView(
                    model=model,
                    budget=budget.name,
                    rpm_used=used["requests"],
                    rpm_limit=limits.rpm,
                    tpm_used=used["tokens"],
                    tpm_limit=limits.tpm,
                    waits=used["waits"],
                    wait_ms_total=used["wait_us"] / 1000,
                    rate_limited=used["429"],
                    errors=used["errors"],
                    failed=used["failed"],
                    paused_seconds=paused,
                )
            )
        views.append(
            TierView(
                tier=tier.name,
                queue=depths[tier.queue],
                backlog=counts.get_count(tier.name, JobStatus.queued),
                in_flight=counts.get_count(tier.name, JobStatus.running),
                models=models,
            )
        )
    return views


def collect_budgets(sessions: sessionmaker[Session]) -> list[PeriodSpend]:
    """Every budget's current UTC day and month."""
    with session_scope(sessions) as session:
        return [
            spend
            for status in budget_status(session, now=utcnow(), tenant_id=None)
            for spend in status.periods
        ]


@dataclass(frozen=True, slots=True)
class ProviderBatchView:
    """The provider Batch API path now: batches in flight, deferred jobs, money saved so far."""

    in_flight: int
    deferred: int
    saved_usd: float

    def caption(self) -> str:
        return (
            f"provider batches in flight: {self.in_flight}, deferred jobs: {self.deferred}, "
            f"saved by the Batch API: ${self.saved_usd:,.2f}"
        )


def read_provider_batches(store: MetricStore, sessions: sessionmaker[Session]) -> ProviderBatchView:
    with session_scope(sessions) as session:
        counts = tier_counts(session)
    saved = store.counters().get(BATCH_SAVINGS.name, {})
    return ProviderBatchView(
        in_flight=counts.provider_batches,
        deferred=sum(counts.get_count(tier, DEFERRED) for tier in counts),
        saved_usd=sum(saved.values()),
    )
