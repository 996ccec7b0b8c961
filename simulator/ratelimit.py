"""Quantized per-minute rate limits, the way hosted APIs enforce them. Pure: the clock is injected.

Each limited dimension of a bucket (requests, tokens, images) spends its per-minute budget over short
fixed windows. A window lasts ``quantum`` seconds (longer when the limit is so low that a window would
allow less than one unit: then it lasts ``60 / limit`` seconds) and allows ``limit * window / 60`` units.
So a burst is refused well below the per-minute figure, as hosted providers do.

- A request fits when its cost and what the window already used stay within the window's allowance.
- A request bigger than one window's allowance (but within the per-minute limit) is admitted when the
  window is untouched; the excess is carried as debt into the next windows, so the long-run rate stays
  at the limit.
- A request bigger than the whole per-minute limit never fits ("request too large").
- A refusal takes nothing, unless ``count_rejected`` is set: then it still uses up one request.

With ``smooth`` (``--quantization bucket``) the window's usage drains continuously instead of at each
window boundary: a bucket that holds one quantum's allowance, refilling at the per-minute rate. Both
are ways a provider quantizes; fixed windows are the harsher one for a client that paces smoothly.

Alongside the windows, each dimension keeps a per-minute view (a bucket of ``limit`` refilled at
``limit / 60`` per second) that feeds the ``x-ratelimit-remaining-*`` and ``x-ratelimit-reset-*``
headers and the "Used" figure of 429 messages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Clock = Callable[[], float]
Dimension = Literal["requests", "tokens", "images"]
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-minute limits of one bucket; 0 means not limited."""

    rpm: int = 0
    tpm: int = 0
    ipm: int = 0

    def scaled(self, factor: float) -> Limits:
        """Every non-zero limit times ``factor``, rounded down but never below 1."""
        return Limits(
            *(max(1, int(value * factor)) if value else 0 for value in (self.rpm, self.tpm, self.ipm))
        )

    @property
    def unlimited(self) -> bool:
        return not (self.rpm or self.tpm or self.ipm)


@dataclass(frozen=True, slots=True)
class Charge:
    """What one call costs at admission: one request, plus tokens and images."""

    tokens: int = 0
    images: int = 0


@dataclass(frozen=True, slots=True)
class DimensionState:
    """The per-minute view of one dimension after a decision, for the ``x-ratelimit-*`` headers."""

    dimension: Dimension
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a call was refused. ``retry_after`` is None when the call can never fit (too large)."""

    dimension: Dimension
    limit: int
    used: int
    requested: int
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission check."""

    rejection: Rejection | None
    states: tuple[DimensionState, ...]

    @property
    def admitted(self) -> bool:
        return self.rejection is None


class QuantizedCounter:
    """One dimension of a bucket: fixed windows with carried debt, plus the per-minute view."""

    __slots__ = (
        "_index",
        "_level",
        "_level_time",
        "_used",
        "_used_time",
        "allowance",
        "limit",
        "smooth",
        "window",
    )

    def __init__(self, limit: int, quantum: float, now: float, smooth: bool = False) -> None:
        self.limit = limit
        self.smooth = smooth
        self._used_time = now
        self.window = max(quantum, 60.0 / limit)
        self.allowance = limit * self.window / 60.0
        self._index = math.floor(now / self.window)
        self._used = 0.0
        self._level = float(limit)
        self._level_time = now

    def wait_for(self, cost: int, now: float) -> float | None:
        """Seconds until ``cost`` fits (0.0: it fits now), or None if it never can."""
        self._advance(now)
        if cost > self.limit:
            return None
        over = self._used + cost - self.allowance if cost <= self.allowance else self._used
        if over <= _EPSILON:
            return 0.0
        if self.smooth:
            return over * self.window / self.allowance
        windows = max(1, math.ceil(over / self.allowance - _EPSILON))
        return max(0.0, (self._index + windows) * self.window - now)

    def take(self, cost: int, now: float) -> None:
        self._advance(now)
        self._used += cost
        self._refill(now)
        self._level -= cost

    def state(self, dimension: Dimension, now: float) -> DimensionState:
        self._refill(now)
        rate = self.limit / 60.0
        remaining = max(0, math.floor(self._level + _EPSILON))
        return DimensionState(dimension, self.limit, remaining, (self.limit - self._level) / rate)

    def used_in_minute(self, now: float) -> int:
        self._refill(now)
        return max(0, round(self.limit - self._level))

    def _advance(self, now: float) -> None:
        if self.smooth:
            drained = (now - self._used_time) * self.allowance / self.window
            self._used = max(0.0, self._used - max(0.0, drained))
            self._used_time = now
            return
        index = math.floor(now / self.window)
        if index > self._index:
            self._used = max(0.0, self._used - self.allowance * (index - self._index))
            self._index = index

    def _refill(self, now: float) -> None:
        elapsed = now - self._level_time
        if elapsed > 0:
            self._level = min(float(self.limit), self._level + elapsed * self.limit / 60.0)
            self._level_time = now


class Bucket:
    """The counters of one model, or of several models sharing a budget."""

    __slots__ = ("_counters", "limits")

    def __init__(self, limits: Limits, quantum: float, now: float, smooth: bool = False) -> None:
        self.limits = limits
        figures: tuple[tuple[Dimension, int], ...] = (
            ("requests", limits.rpm),
            ("tokens", limits.tpm),
            ("images", limits.ipm),
        )
        self._counters = tuple(
            (dimension, QuantizedCounter(limit, quantum, now, smooth))
            for dimension, limit in figures
            if limit > 0
        )

    def decide(self, charge: Charge, now: float, count_rejected: bool) -> Decision:
        """Admit the call and take its cost from every dimension, or refuse it and say why."""
        rejection: Rejection | None = None
        for dimension, counter in self._counters:
            cost = _cost_of(dimension, charge)
            if cost == 0:
                continue
            wait = counter.wait_for(cost, now)
            if wait == 0.0:
                continue
            if rejection is None or _outranks(wait, rejection.retry_after):
                used = counter.used_in_minute(now)
                rejection = Rejection(dimension, counter.limit, used, cost, wait)
        if rejection is None:
            for dimension, counter in self._counters:
                cost = _cost_of(dimension, charge)
                if cost:
                    counter.take(cost, now)
        elif count_rejected:
            for dimension, counter in self._counters:
                if dimension == "requests":
                    counter.take(1, now)
        return Decision(
            rejection, tuple(counter.state(dimension, now) for dimension, counter in self._counters)
        )


def _cost_of(dimension: Dimension, charge: Charge) -> int:
    if dimension == "requests":
        return 1
    return charge.tokens if dimension == "tokens" else charge.images


def _outranks(wait: float | None, current: float | None) -> bool:
    """A call that can never fit is reported first; otherwise the longest wait wins."""
    if current is None:
        return False
    return wait is None or wait > current


class RateLimiter:
    """Buckets by key, created on first use; a key whose limits change starts a fresh bucket."""

    def __init__(
        self,
        quantum: float = 1.0,
        clock: Clock = time.monotonic,
        count_rejected: bool = False,
        *,
        smooth: bool = False,
    ) -> None:
        if quantum <= 0:
            raise ValueError("quantum must be above 0")
        self.quantum = quantum
        self.count_rejected = count_rejected
        self.smooth = smooth
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}

    def acquire(self, key: str, limits: Limits, charge: Charge) -> Decision:
        """Admit or refuse one call against the bucket ``key`` limited by ``limits``."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.limits != limits:
            bucket = self._buckets[key] = Bucket(limits, self.quantum, now, self.smooth)
        return bucket.decide(charge, now, self.count_rejected)

    def reset(self) -> None:
        """Forget every bucket (all budgets full again)."""
        self._buckets.clear()
