"""The metrics of a provider batch's settlement: jobs by fate, and for each call completed, its tokens,
its cost at the batch price (``batchery_cost_usd``) and what it saved against the live price
(``batchery_batch_savings_usd``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from config.prices import PriceTable
from config.tiers import TierConfig
from domain.metrics import catalog
from domain.metrics.store import MetricBatch, MetricStore
from domain.provider_batches.settle import Settlement
from domain.tokens.costs import UsageAmounts, usage_cost


class SettlementMetrics:
    """Writes one settlement's metrics in one batch."""

    def __init__(
        self,
        store: MetricStore,
        tiers: TierConfig,
        prices: PriceTable,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.labels = catalog.MetricLabels(tiers)
        self.prices = prices
        self.clock = clock

    def batch_of(self, done: Settlement) -> MetricBatch:
        batch = MetricBatch()
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        for job in done.jobs:
            tier, model = self.labels.tier(job.tier), self.labels.model(job.model)
            fate = catalog.bounded(job.fate, catalog.PROVIDER_BATCH_OUTCOMES)
            batch.count(catalog.PROVIDER_BATCH_JOBS, (tier, model, fate))
            if job.status is not None:
                batch.count(catalog.JOBS_FINISHED, (tier, self.labels.kind(job.kind), model, job.status))
            if job.usage is None:
                continue
            usage = job.usage
            batch.count(catalog.TOKENS, (tier, model, "input"), usage.prompt_tokens)
            batch.count(catalog.TOKENS, (tier, model, "output"), usage.completion_tokens)
            batch.count(catalog.TOKENS, (tier, model, "cached_input"), usage.cached_tokens)
            batch.count(catalog.TOKENS, (tier, model, "reasoning"), usage.reasoning_tokens)
            amounts = UsageAmounts(
                requests=1,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
            )
            live_price = self.prices.price_on(job.model, today)
            if live_price is None:
                continue
            batch_cost = usage_cost(live_price.batch_price(), amounts).usd
            batch.count(catalog.COST, (tier, model), float(batch_cost))
            batch.count(
                catalog.BATCH_SAVINGS, (tier, model), float(usage_cost(live_price, amounts).usd - batch_cost)
            )
        return batch

    def write(self, done: Settlement) -> None:
        batch = self.batch_of(done)
        if batch:
            self.store.write(batch, self.clock())
