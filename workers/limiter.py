"""The global rate limiter: one continuously refilling bucket per budget, shared by every worker.

A budget (a tier's model, or a ``budget`` name several models share) has three dimensions: requests,
tokens and images. Each holds a level that refills at ``per_minute / 60`` units a second up to its
capacity, ``rate * burst_seconds`` (at least one request); a limit of 0 means not limited. An acquire
takes the whole cost from every dimension at once or nothing; a dimension whose cost exceeds its
capacity is taken as soon as that dimension is full and then owes the rest (its level goes below zero),
so an oversize request waits at most one capacity refill. The debt is bounded by one capacity: what a
call takes beyond it is forgiven, so no single request (a job asking for two billion tokens, say) can
hold a shared bucket for longer than two refills. The long-run rate holds exactly for costs up to twice
the capacity; a larger cost is forgiven its excess (raise ``burst_seconds`` when real requests are that
large). Submission bounds each job's output tokens by its model's limits (``domain.jobs.token_bounds``).

``RedisLimiter`` keeps the buckets in Redis and changes them only through ``limiter.lua``, which reads
Redis ``TIME`` so every machine shares one clock. ``MemoryLimiter`` is the same thing in one process on
an injected clock, for tests. Both are checked against the pure functions below.

Upstream headers (``observe``): the upstream can admit ``R`` now (``remaining``) and, if it reports its
``limit`` L and ``reset`` S, refills at ``u = (L - R) / S`` until it is full again; the bucket can hand
out ``level`` now and refills at its own rate ``r``. The level is lowered (never raised) to the largest
value for which the bucket never promises more than the upstream anywhere in that window:
``min(level, R, R + (u - r) * S)``. Without L and S the upstream is taken to refill at ``r``, giving
``min(level, R)``. Requests still in flight are not counted, so the correction is a floor, not a ledger.
"""

from __future__ import annotations

import math
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis

from config.errors import BatcheryError
from config.tiers import ModelLimits
from domain.storage.redis_keys import DEFAULT_PREFIX, RedisKeys
from domain.tokens.estimates import Cost
from workers.ratelimit_headers import RateLimitState

__all__ = [
    "Budget",
    "Limiter",
    "LimiterError",
    "LimiterTimeout",
    "LimiterUnavailable",
    "MemoryLimiter",
    "RedisLimiter",
    "observe_ceilings",
    "refill",
    "settle_levels",
    "take",
    "wait_seconds",
]

EPSILON = 1e-6
Triple = tuple[float, float, float]
Ceilings = tuple[float | None, float | None, float | None]


class LimiterError(BatcheryError):
    """The rate limiter failed."""


class LimiterTimeout(LimiterError):
    """The rate limit budget did not free up within the allowed wait."""

    def __init__(self, budget: str, waited: float, wait: float) -> None:
        super().__init__(f"budget {budget!r}: {wait:.3f}s more to wait after {waited:.3f}s")
        self.budget = budget
        self.waited = waited
        self.wait = wait


class LimiterUnavailable(LimiterError):
    """The rate limiter's Redis could not be reached."""


@dataclass(frozen=True)
class Budget:
    """One bucket's identity and limits. Models that share a budget name should share its limits."""

    name: str
    rpm: int
    tpm: int = 0
    ipm: int = 0
    burst_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a budget needs a name")
        if self.rpm <= 0 or self.tpm < 0 or self.ipm < 0:
            raise ValueError("rpm must be positive; tpm and ipm zero (not limited) or positive")
        if not (math.isfinite(self.burst_seconds) and self.burst_seconds > 0):
            raise ValueError("burst_seconds must be a positive number")

    @classmethod
    def for_model(cls, tier_name: str, model: str, limits: ModelLimits, burst_seconds: float) -> Budget:
        """The budget of ``model`` in ``tier_name``: its shared ``budget`` name, else ``<tier>:<model>``."""
        name = limits.budget or f"{tier_name}:{model}"
        return cls(name, limits.rpm, limits.tpm, limits.ipm, burst_seconds)

    @property
    def rates(self) -> Triple:
        """Refill per second of requests, tokens and images (0 = not limited)."""
        return (self.rpm / 60.0, self.tpm / 60.0, self.ipm / 60.0)

    @property
    def capacities(self) -> Triple:
        """Largest level of each dimension: ``rate * burst_seconds``, and at least one request."""
        requests, tokens, images = (rate * self.burst_seconds for rate in self.rates)
        return (max(1.0, requests), tokens, images)


def cost_vector(cost: Cost) -> Triple:
    """A cost as (requests, tokens, images); negative parts are refused."""
    amounts = (float(cost.requests), float(cost.tokens), float(cost.images))
    if min(amounts) < 0:
        raise ValueError(f"a cost cannot be negative: {cost!r}")
    return amounts


def refill(levels: Triple, budget: Budget, elapsed: float) -> Triple:
    """Levels after ``elapsed`` seconds of refill, each capped at its capacity."""
    elapsed = max(0.0, elapsed)
    return _zip3(
        lambda level, rate, cap: min(cap, level + rate * elapsed), levels, budget.rates, budget.capacities
    )


def wait_seconds(levels: Triple, budget: Budget, cost: Triple) -> float:
    """0.0 when ``cost`` fits now, else the seconds (whole milliseconds, rounded up) until it fits."""
    wait_ms = 0.0
    for level, rate, cap, amount in zip(levels, budget.rates, budget.capacities, cost, strict=True):
        if rate > 0 and amount > 0:
            need = min(amount, cap)
            if level < need - EPSILON:
                wait_ms = max(wait_ms, (need - level) / rate * 1000.0)
    return max(1.0, math.ceil(wait_ms)) / 1000.0 if wait_ms > 0 else 0.0


def charge(level: float, amount: float, capacity: float) -> float:
    """A level after taking ``amount``: at most one ``capacity`` below zero, so one call never holds a
    bucket for longer than two refills (a deeper level, left by a pause, is kept as it is)."""
    return max(level - amount, min(level, -capacity))


def take(levels: Triple, budget: Budget, cost: Triple) -> Triple:
    """Levels after taking ``cost`` from every limited dimension (a level may go below zero, by at most
    one capacity)."""

    def one(index: int) -> float:
        if budget.rates[index] <= 0:
            return levels[index]
        return charge(levels[index], cost[index], budget.capacities[index])

    return (one(0), one(1), one(2))


def settle_levels(levels: Triple, budget: Budget, delta: Triple) -> Triple:
    """Levels after charging ``delta`` (negative = refund) to limited dimensions; refunds stop at capacity,
    charges at one capacity of debt."""

    def one(index: int) -> float:
        if budget.rates[index] <= 0:
            return levels[index]
        capacity = budget.capacities[index]
        return min(capacity, charge(levels[index], delta[index], capacity))

    return (one(0), one(1), one(2))


def drain(levels: Triple, budget: Budget, seconds: float) -> Triple:
    """Levels for a pause of ``seconds``: emptied, so the bucket reaches zero as the pause ends."""
    return _zip3(
        lambda level, rate, _cap: min(level, 0.0) - rate * seconds if rate > 0 else level,
        levels,
        budget.rates,
        budget.capacities,
    )


def lower(levels: Triple, budget: Budget, ceilings: Ceilings) -> Triple:
    """Levels lowered to ``ceilings`` where one is given for a limited dimension, never raised."""

    def one(index: int) -> float:
        ceiling = ceilings[index]
        if ceiling is None or budget.rates[index] <= 0:
            return levels[index]
        return min(levels[index], ceiling)

    return (one(0), one(1), one(2))


def observe_ceilings(budget: Budget, state: RateLimitState) -> Ceilings:
    """Per dimension, the highest level the upstream's headers allow (see the module docstring)."""
    request_rate, token_rate, _ = budget.rates
    return (
        _ceiling(state.remaining_requests, state.limit_requests, state.reset_requests, request_rate),
        _ceiling(state.remaining_tokens, state.limit_tokens, state.reset_tokens, token_rate),
        None,
    )


def _ceiling(remaining: int | None, limit: int | None, reset: float | None, rate: float) -> float | None:
    if remaining is None or rate <= 0:
        return None
    ceiling = float(remaining)
    if limit is not None and reset is not None and reset > 0:
        upstream_rate = max(0.0, (limit - remaining) / reset)
        ceiling = min(ceiling, remaining + (upstream_rate - rate) * reset)
    return ceiling


def _zip3(fn: Callable[[float, float, float], float], a: Triple, b: Triple, c: Triple) -> Triple:
    return (fn(a[0], b[0], c[0]), fn(a[1], b[1], c[1]), fn(a[2], b[2], c[2]))


def _snapshot(levels: Triple, budget: Budget, paused: float) -> dict[str, float]:
    requests_cap, tokens_cap, images_cap = budget.capacities
    return {
        "requests": levels[0],
        "tokens": levels[1],
        "images": levels[2],
        "requests_capacity": requests_cap,
        "tokens_capacity": tokens_cap,
        "images_capacity": images_cap,
        "paused_seconds": paused,
    }


class Limiter(ABC):
    """The limiter interface. A capacity of 0 in a snapshot means the dimension is not limited."""

    @abstractmethod
    def acquire(self, budget: Budget, cost: Cost) -> float:
        """Take ``cost`` now and answer 0.0, or take nothing and answer the seconds to wait."""

    @abstractmethod
    def settle(self, budget: Budget, reserved: Cost, actual: Cost) -> None:
        """Charge ``actual - reserved`` (a negative difference is refunded, up to capacity)."""

    @abstractmethod
    def pause(self, budget: Budget, seconds: float) -> None:
        """Make every acquire on ``budget`` wait ``seconds``, unless a longer pause is running."""

    @abstractmethod
    def observe(self, budget: Budget, headers: RateLimitState) -> None:
        """Lower the bucket where the upstream reports less budget than the bucket holds."""

    @abstractmethod
    def snapshot(self, budget: Budget) -> dict[str, float]:
        """Current levels, capacities and remaining pause seconds of ``budget``."""

    def wait_and_acquire(
        self,
        budget: Budget,
        cost: Cost,
        *,
        max_wait: float,
        sleep: Callable[[float], None] = time.sleep,
        jitter: float = 0.02,
    ) -> float:
        """Acquire, sleeping as told (plus up to ``jitter`` seconds), and return the seconds slept.

        Raises LimiterTimeout, before sleeping, when the next wait would take the total past ``max_wait``.
        """
        waited = 0.0
        while True:
            wait = self.acquire(budget, cost)
            if wait <= 0:
                return waited
            if waited + wait > max_wait:
                raise LimiterTimeout(budget.name, waited, wait)
            delay = wait + random.uniform(0.0, jitter)
            sleep(delay)
            waited += delay


class MemoryLimiter(Limiter):
    """The limiter kept in this process's memory, on an injected clock (seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[Triple, float]] = {}
        self._pauses: dict[str, float] = {}

    def _levels(self, budget: Budget, now: float) -> Triple:
        stored = self._buckets.get(budget.name)
        if stored is None:
            return budget.capacities
        levels, stamp = stored
        return refill(levels, budget, now - stamp)

    def _paused(self, budget: Budget, now: float) -> float:
        remaining = self._pauses.get(budget.name, now) - now
        return math.ceil(remaining * 1000.0) / 1000.0 if remaining > 0 else 0.0

    def acquire(self, budget: Budget, cost: Cost) -> float:
        amounts = cost_vector(cost)
        with self._lock:
            now = self._clock()
            paused = self._paused(budget, now)
            if paused > 0:
                return paused
            levels = self._levels(budget, now)
            wait = wait_seconds(levels, budget, amounts)
            if wait == 0:
                self._buckets[budget.name] = (take(levels, budget, amounts), now)
            return wait

    def settle(self, budget: Budget, reserved: Cost, actual: Cost) -> None:
        delta = _settle_delta(reserved, actual)
        with self._lock:
            now = self._clock()
            self._buckets[budget.name] = (settle_levels(self._levels(budget, now), budget, delta), now)

    def pause(self, budget: Budget, seconds: float) -> None:
        millis = _pause_millis(seconds)
        if millis <= 0:
            return
        with self._lock:
            now = self._clock()
            until = now + millis / 1000.0
            if until > self._pauses.get(budget.name, now):
                self._pauses[budget.name] = until
                drained = drain(self._levels(budget, now), budget, millis / 1000.0)
                self._buckets[budget.name] = (drained, now)

    def observe(self, budget: Budget, headers: RateLimitState) -> None:
        ceilings = observe_ceilings(budget, headers)
        with self._lock:
            now = self._clock()
            levels = self._levels(budget, now)
            lowered = lower(levels, budget, ceilings)
            if lowered != levels:
                self._buckets[budget.name] = (lowered, now)

    def snapshot(self, budget: Budget) -> dict[str, float]:
        with self._lock:
            now = self._clock()
            return _snapshot(self._levels(budget, now), budget, self._paused(budget, now))


class RedisLimiter(Limiter):
    """The limiter shared by every process through Redis; each operation is one run of limiter.lua."""

    def __init__(self, client: redis.Redis[Any], prefix: str = DEFAULT_PREFIX) -> None:
        self._keys = RedisKeys(prefix)
        self._script = client.register_script(_script_source())

    def _run(self, budget: Budget, op: str, operands: Sequence[float | str | None]) -> Any:
        args = [op, *map(repr, budget.rates), *map(repr, budget.capacities)]
        args += [
            "" if value is None else value if isinstance(value, str) else repr(value) for value in operands
        ]
        keys = [self._keys.limiter_bucket(budget.name), self._keys.limiter_pause(budget.name)]
        try:
            return self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"rate limiter call {op!r} failed: {exc}") from exc

    def acquire(self, budget: Budget, cost: Cost) -> float:
        return int(self._run(budget, "acquire", cost_vector(cost))) / 1000.0

    def settle(self, budget: Budget, reserved: Cost, actual: Cost) -> None:
        delta = _settle_delta(reserved, actual)
        if any(delta):
            self._run(budget, "settle", delta)

    def pause(self, budget: Budget, seconds: float) -> None:
        millis = _pause_millis(seconds)
        if millis > 0:
            self._run(budget, "pause", [str(millis), "0", "0"])

    def observe(self, budget: Budget, headers: RateLimitState) -> None:
        ceilings = observe_ceilings(budget, headers)
        if any(ceiling is not None for ceiling in ceilings):
            self._run(budget, "observe", ceilings)

    def snapshot(self, budget: Budget) -> dict[str, float]:
        reply = self._run(budget, "snapshot", ["0", "0", "0"])
        values = [float(item.decode() if isinstance(item, bytes) else item) for item in reply]
        return _snapshot((values[0], values[1], values[2]), budget, values[3] / 1000.0)


def _settle_delta(reserved: Cost, actual: Cost) -> Triple:
    before, after = cost_vector(reserved), cost_vector(actual)
    return (after[0] - before[0], after[1] - before[1], after[2] - before[2])


def _pause_millis(seconds: float) -> int:
    return math.ceil(seconds * 1000.0) if math.isfinite(seconds) and seconds > 0 else 0


@cache
def _script_source() -> str:
    return Path(__file__).with_name("limiter.lua").read_text(encoding="utf-8")
