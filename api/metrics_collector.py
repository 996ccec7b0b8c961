"""The Prometheus collector behind ``/metrics``: stored counters and histograms, and gauges read now.

Counters and histograms come from Redis, where every API and worker process adds to them
(``domain.metrics.store``). Gauges are read at scrape time: the broker queue depth of each tier
(``LLEN`` of its lists) and the jobs queued and running per tier (one query on the database). Every
family is exported even before it has a sample, so dashboards and alerts can name them from the start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from config.tiers import TierConfig
from domain.budgets.status import PeriodSpend
from domain.metrics import catalog
from domain.metrics.store import MetricStore
from domain.metrics.tier_counts import DEFERRED, TierCounts
from domain.status import JobStatus


class BatcheryCollector(Collector):
    """Collects batchery's metrics for one scrape."""

    def __init__(
        self,
        store: MetricStore,
        tiers: TierConfig,
        counts: Callable[[], TierCounts],
        budgets: Callable[[], list[PeriodSpend]] = list,
    ) -> None:
        self.store = store
        self.tiers = tiers
        self.counts = counts
        self.budgets = budgets

    def collect(self) -> Iterator[Metric]:
        counters = self.store.counters()
        histograms = self.store.histograms()
        for family in catalog.STORED_FAMILIES:
            if family.kind == "counter":
                counter = CounterMetricFamily(family.name, family.help, labels=family.labels)
                for labels, value in sorted(counters.get(family.name, {}).items()):
                    counter.add_metric(labels, value)
                yield counter
                continue
            histogram = HistogramMetricFamily(family.name, family.help, labels=family.labels)
            for labels, data in sorted(histograms.get(family.name, {}).items()):
                cumulative, buckets = 0, []
                for bound, count in zip((*map(str, family.buckets), "+Inf"), data.buckets, strict=True):
                    cumulative += count
                    buckets.append((bound, float(cumulative)))
                histogram.add_metric(labels, buckets, data.total)
            yield histogram
        yield from self._gauges()

    def _gauges(self) -> Iterator[Metric]:
        tiers = list(self.tiers.tiers.values())
        depths = self.store.queue_lengths([tier.queue for tier in tiers])
        counts = self.counts()
        depth = GaugeMetricFamily(catalog.QUEUE_DEPTH.name, catalog.QUEUE_DEPTH.help, labels=["tier"])
        in_flight = GaugeMetricFamily(
            catalog.JOBS_IN_FLIGHT.name, catalog.JOBS_IN_FLIGHT.help, labels=["tier"]
        )
        queued = GaugeMetricFamily(catalog.BACKLOG_JOBS.name, catalog.BACKLOG_JOBS.help, labels=["tier"])
        deferred = GaugeMetricFamily(catalog.DEFERRED_JOBS.name, catalog.DEFERRED_JOBS.help, labels=["tier"])
        for tier in tiers:
            depth.add_metric([tier.name], depths[tier.queue])
            in_flight.add_metric([tier.name], counts.get_count(tier.name, JobStatus.running))
            queued.add_metric([tier.name], counts.get_count(tier.name, JobStatus.queued))
            deferred.add_metric([tier.name], counts.get_count(tier.name, DEFERRED))
        family = catalog.PROVIDER_BATCHES_IN_FLIGHT
        batches = GaugeMetricFamily(family.name, family.help, value=counts.provider_batches)
        yield from (depth, in_flight, queued, deferred, batches)
        yield from self._budget_gauges()

    def _budget_gauges(self) -> Iterator[Metric]:
        """Each budget's limits and spend in the current UTC day and month (a limit only where set)."""
        gauges = {
            family.name: GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for family in catalog.BUDGET_FAMILIES
        }
        for spend in self.budgets():
            labels = [spend.tenant_id, spend.key_id or catalog.BUDGET_WHOLE_TENANT, spend.period.value]
            if spend.limit_usd is not None:
                gauges[catalog.BUDGET_LIMIT_USD.name].add_metric(labels, float(spend.limit_usd))
            if spend.limit_tokens is not None:
                gauges[catalog.BUDGET_LIMIT_TOKENS.name].add_metric(labels, spend.limit_tokens)
            gauges[catalog.BUDGET_SPENT_USD.name].add_metric(labels, float(spend.spent_usd))
            gauges[catalog.BUDGET_RESERVED_USD.name].add_metric(labels, float(spend.reserved_usd))
            gauges[catalog.BUDGET_SPENT_TOKENS.name].add_metric(labels, spend.spent_tokens)
            gauges[catalog.BUDGET_RESERVED_TOKENS.name].add_metric(labels, spend.reserved_tokens)
        yield from gauges.values()
