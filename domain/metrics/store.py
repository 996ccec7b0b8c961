"""Metrics kept in Redis, so that every process on every machine adds to the same figures.

Why Redis and not prometheus-client's multiprocess mode or one port per process: the API and the
workers are different processes, usually on different machines, and workers come and go. Multiprocess
mode only adds up processes that share one directory on one host; a port per process needs service
discovery for every worker and loses a worker's counts when it exits. Redis is already shared by
every process, and ``HINCRBY`` is atomic, so the counters are exact and outlive any process.

Layout (all under the deployment's prefix, ``batchery`` by default):

Key names come from ``domain.storage.redis_keys``.

- ``<prefix>:metrics:counters``: one hash. Field ``<family>|<label value>|...``, value an integer
  (``Family.scale`` units make one: the cost is kept in billionths of a dollar).
- ``<prefix>:metrics:histograms``: one hash. Field ``<family>|<label value>|...|b<i>`` counts the
  observations in bucket ``i`` (not cumulative; ``i == len(buckets)`` is ``+Inf``), and
  ``...|sum`` their total in millionths of a second.
- ``<prefix>:metrics:window:<slot>``: one hash per 10-second slot, expiring after two minutes.
  Field ``<tier>|<model>|<name>``; ``batchery top`` reads the last minute's requests, tokens, 429s,
  errors and limiter waits from it.

A process gathers what one job did in a ``MetricBatch`` and writes it with one pipelined round trip.
Label values are bounded by ``domain.metrics.catalog``; ``|`` never appears in one.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from domain.metrics.catalog import STORED_FAMILIES, WEBHOOK_DELIVERIES, WEBHOOK_OUTCOMES, Family, bounded
from domain.storage.redis_keys import BROKER_PRIORITY_STEPS, DEFAULT_PREFIX, RedisKeys, broker_queue_keys

log = logging.getLogger(__name__)

SEP = "|"
WINDOW_SLOT_SECONDS = 10
WINDOW_TTL_SECONDS = 120

Labels = tuple[str, ...]


def _clean(value: str) -> str:
    return value.replace(SEP, "_")


@dataclass
class MetricBatch:
    """Increments gathered in memory, written together by ``MetricStore.write``."""

    counters: Counter[str] = field(default_factory=Counter)
    histograms: Counter[str] = field(default_factory=Counter)
    window: Counter[str] = field(default_factory=Counter)

    def count(self, family: Family, labels: Labels, amount: float = 1) -> None:
        """Add ``amount`` (in the family's unit) to a counter."""
        stored = round(amount * family.scale)
        if stored:
            self.counters[SEP.join((family.name, *map(_clean, labels)))] += stored

    def observe(self, family: Family, labels: Labels, value: float) -> None:
        """Record one observation of a histogram."""
        value = max(0.0, value) if math.isfinite(value) else 0.0
        bucket = next((i for i, bound in enumerate(family.buckets) if value <= bound), len(family.buckets))
        base = SEP.join((family.name, *map(_clean, labels)))
        self.histograms[f"{base}{SEP}b{bucket}"] += 1
        self.histograms[f"{base}{SEP}sum"] += round(value * family.scale)

    def add_window(self, tier: str, model: str, name: str, amount: float = 1) -> None:
        """Add to the current 10-second slot of ``tier``/``model``."""
        stored = round(amount)
        if stored:
            self.window[SEP.join((_clean(tier), _clean(model), name))] += stored

    def __bool__(self) -> bool:
        return bool(self.counters or self.histograms or self.window)


@dataclass(frozen=True, slots=True)
class HistogramData:
    """One labelled histogram: per-bucket counts (not cumulative, ``+Inf`` last) and the sum."""

    buckets: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.buckets)


class MetricStore:
    """Reads and writes the metrics kept in Redis."""

    def __init__(self, client: redis.Redis[Any], prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._families = {family.name: family for family in STORED_FAMILIES}

    def write(self, batch: MetricBatch, now: float) -> None:
        """Write ``batch`` in one pipelined round trip (no transaction: each HINCRBY is atomic)."""
        if not batch:
            return
        pipe = self.client.pipeline(transaction=False)
        for name, amount in batch.counters.items():
            pipe.hincrby(self.keys.metrics_counters, name, amount)
        for name, amount in batch.histograms.items():
            pipe.hincrby(self.keys.metrics_histograms, name, amount)
        if batch.window:
            key = self.keys.metrics_window(int(now // WINDOW_SLOT_SECONDS))
            for name, amount in batch.window.items():
                pipe.hincrby(key, name, amount)
            pipe.expire(key, WINDOW_TTL_SECONDS)
        pipe.execute()

    def counters(self) -> dict[str, dict[Labels, float]]:
        """Every stored counter, by family name then label values, in the family's unit."""
        found: dict[str, dict[Labels, float]] = {}
        for field_name, raw in self.client.hgetall(self.keys.metrics_counters).items():
            family, labels = self._split(field_name, extra=0)
            if family is not None:
                found.setdefault(family.name, {})[labels] = int(raw) / family.scale
        return found

    def histograms(self) -> dict[str, dict[Labels, HistogramData]]:
        """Every stored histogram, by family name then label values."""
        raw_buckets: dict[tuple[str, Labels], list[int]] = {}
        sums: dict[tuple[str, Labels], int] = {}
        for field_name, raw in self.client.hgetall(self.keys.metrics_histograms).items():
            family, parts = self._split(field_name, extra=1)
            if family is None:
                continue
            labels, slot = parts[:-1], parts[-1]
            key = (family.name, labels)
            counts = raw_buckets.setdefault(key, [0] * (len(family.buckets) + 1))
            if slot == "sum":
                sums[key] = int(raw)
            elif slot.startswith("b") and slot[1:].isdigit() and int(slot[1:]) < len(counts):
                counts[int(slot[1:])] = int(raw)
        found: dict[str, dict[Labels, HistogramData]] = {}
        for (name, labels), counts in raw_buckets.items():
            scale = self._families[name].scale
            found.setdefault(name, {})[labels] = HistogramData(
                tuple(counts), sums.get((name, labels), 0) / scale
            )
        return found

    def window(self, now: float, span: float = 60.0) -> dict[tuple[str, str, str], float]:
        """Sums over the last ``span`` seconds by (tier, model, name): whole recent slots, and the
        share of the oldest slot that falls inside the span."""
        current = int(now // WINDOW_SLOT_SECONDS)
        into = (now % WINDOW_SLOT_SECONDS) / WINDOW_SLOT_SECONDS
        whole = max(1, int(span // WINDOW_SLOT_SECONDS))
        weights = {current - back: 1.0 for back in range(whole)}
        weights[current - whole] = 1.0 - into
        pipe = self.client.pipeline(transaction=False)
        slots = sorted(weights)
        for slot in slots:
            pipe.hgetall(self.keys.metrics_window(slot))
        totals: dict[tuple[str, str, str], float] = {}
        for slot, values in zip(slots, pipe.execute(), strict=True):
            for field_name, raw in values.items():
                parts = _text(field_name).split(SEP)
                if len(parts) == 3:
                    key = (parts[0], parts[1], parts[2])
                    totals[key] = totals.get(key, 0.0) + int(raw) * weights[slot]
        return totals

    def queue_lengths(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages waiting in each broker queue (summed over the priority lists), in one round trip."""
        names = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in names:
            for key in broker_queue_keys(queue):
                pipe.llen(key)
        lengths = iter(pipe.execute())
        return {queue: sum(int(next(lengths)) for _ in BROKER_PRIORITY_STEPS) for queue in names}

    def _split(self, field_name: bytes | str, *, extra: int) -> tuple[Family | None, Labels]:
        parts = _text(field_name).split(SEP)
        family = self._families.get(parts[0])
        if family is None or len(parts) != 1 + len(family.labels) + extra:
            return None, ()
        return family, tuple(parts[1:])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def record_webhook_delivery(client: redis.Redis[Any], outcome: str, *, prefix: str = DEFAULT_PREFIX) -> None:
    """Count one webhook delivery attempt by its outcome: ``succeeded`` (2xx), ``retrying`` (it failed
    and another attempt is scheduled) or ``failed`` (no more attempts: the schedule is spent, 410 Gone,
    or the URL is refused). Anything else counts as ``other``.

    It never raises: a metric is not worth failing a delivery for.
    """
    batch = MetricBatch()
    batch.count(WEBHOOK_DELIVERIES, (bounded(outcome, WEBHOOK_OUTCOMES),))
    try:
        MetricStore(client, prefix).write(batch, now=0.0)
    except (redis.RedisError, OSError) as exc:
        log.debug("webhook delivery metric not written: %s", type(exc).__name__)
