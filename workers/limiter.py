"""The global rate limiter: one continuously refilling bucket per budget, shared by every worker.

``RedisLimiter`` keeps the buckets in Redis and changes them only through ``limiter.lua``, which reads
Redis ``TIME`` so every machine shares one clock. ``MemoryLimiter`` is the same thing in one process on
an injected clock, for tests. Both are checked against the pure bucket arithmetic in
``workers.buckets``, which says how a bucket fills, lends and forgives.
"""

from __future__ import annotations

import math
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import redis

from config.errors import BatcheryError
from domain.storage.redis_keys import DEFAULT_PREFIX, RedisKeys
from domain.tokens.estimates import Cost
from workers.buckets import (
    Budget,
    Triple,
    cost_vector,
    drain,
    lower,
    observe_ceilings,
    refill,
    settle_levels,
    snapshot,
    take,
    wait_seconds,
)
from workers.ratelimit_headers import RateLimitState

__all__ = ["Limiter", "LimiterError", "LimiterTimeout", "LimiterUnavailable", "MemoryLimiter", "RedisLimiter"]


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
            return snapshot(self._levels(budget, now), budget, self._paused(budget, now))


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
        return snapshot((values[0], values[1], values[2]), budget, values[3] / 1000.0)


def _settle_delta(reserved: Cost, actual: Cost) -> Triple:
    before, after = cost_vector(reserved), cost_vector(actual)
    return (after[0] - before[0], after[1] - before[1], after[2] - before[2])


def _pause_millis(seconds: float) -> int:
    return math.ceil(seconds * 1000.0) if math.isfinite(seconds) and seconds > 0 else 0


@cache
def _script_source() -> str:
    return Path(__file__).with_name("limiter.lua").read_text(encoding="utf-8")
