"""Latency distributions, written as short specs.

=========================  ====================================================================
spec                       meaning
=========================  ====================================================================
``fixed:MS``               always MS milliseconds (``fixed:0`` answers at once)
``uniform:LO:HI``          uniformly between LO and HI milliseconds
``lognormal:MEDIAN:SIGMA`` log-normal with median MEDIAN milliseconds and shape SIGMA (> 0)
=========================  ====================================================================
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

LatencyKind = Literal["fixed", "uniform", "lognormal"]


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """A latency distribution; ``first`` and ``second`` are milliseconds except a log-normal's sigma."""

    kind: LatencyKind
    first: float
    second: float = 0.0

    @property
    def is_zero(self) -> bool:
        return self.kind == "fixed" and self.first == 0

    def sample_seconds(self, rng: random.Random) -> float:
        """Draw one latency, in seconds."""
        if self.kind == "fixed":
            millis = self.first
        elif self.kind == "uniform":
            millis = rng.uniform(self.first, self.second)
        else:
            millis = self.first * math.exp(rng.gauss(0.0, self.second))
        return max(0.0, millis) / 1000.0

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{_number(self.first)}"
        return f"{self.kind}:{_number(self.first)}:{_number(self.second)}"


ZERO_LATENCY = LatencySpec("fixed", 0.0)


def parse_latency(text: str) -> LatencySpec:
    """Parse a latency spec; a ValueError says what is wrong with it."""
    kind, _, rest = text.strip().partition(":")
    parts = rest.split(":") if rest else []
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"latency {text!r}: the figures must be numbers") from None
    if any(not math.isfinite(number) or number < 0 for number in numbers):
        raise ValueError(f"latency {text!r}: the figures must be finite and not negative")
    if kind == "fixed" and len(numbers) == 1:
        return LatencySpec("fixed", numbers[0])
    if kind == "uniform" and len(numbers) == 2:
        low, high = numbers
        if low > high:
            raise ValueError(f"latency {text!r}: LO must not exceed HI")
        return LatencySpec("uniform", low, high)
    if kind == "lognormal" and len(numbers) == 2:
        if numbers[1] <= 0:
            raise ValueError(f"latency {text!r}: SIGMA must be above 0")
        return LatencySpec("lognormal", numbers[0], numbers[1])
    raise ValueError(f"latency {text!r}: expected fixed:MS, uniform:LO:HI or lognormal:MEDIAN_MS:SIGMA")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
