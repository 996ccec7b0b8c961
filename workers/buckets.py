"""A budget's token bucket, as pure arithmetic: how it refills, takes, owes, settles and is corrected.

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

Upstream headers (``observe``): the upstream can admit ``R`` now (``remaining``) and, if it reports its
``limit`` L and ``reset`` S, refills at ``u = (L - R) / S`` until it is full again; the bucket can hand
out ``level`` now and refills at its own rate ``r``. The level is lowered (never raised) to the largest
value for which the bucket never promises more than the upstream anywhere in that window:
``min(level, R, R + (u - r) * S)``. Without L and S the upstream is taken to refill at ``r``, giving
``min(level, R)``. Requests still in flight are not counted, so the correction is a floor, not a ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from config.tiers import ModelLimits
from domain.tokens.estimates import Cost
from workers.ratelimit_headers import RateLimitState

EPSILON = 1e-6
Triple = tuple[float, float, float]
Ceilings = tuple[float | None, float | None, float | None]


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


def snapshot(levels: Triple, budget: Budget, paused: float) -> dict[str, float]:
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
