"""What stored usage cost, under the price table (``config.prices``).

Cost is always computed from the usage stored with a job after its call (the columns of
``domain.tokens.estimates.usage_columns``), never from the estimate made before it, and with the price entry
in effect on the day the job finished::

    input  = (prompt_tokens - cached_tokens) * input + cached_tokens * cached_input   (per million)
    output = completion_tokens * output                                               (per million)
    images = images * price(quality, size)                        (models priced per image)

Reasoning tokens are part of the completion tokens, so they are billed once, as output.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from config.prices import PER_MILLION, ModelPrice

__all__ = ["PricedCost", "UsageAmounts", "usage_cost"]


@dataclass(frozen=True, slots=True)
class UsageAmounts:
    """Summed usage of one or more jobs of one model."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0

    def __add__(self, other: UsageAmounts) -> UsageAmounts:
        return UsageAmounts(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.images + other.images,
        )


@dataclass(frozen=True, slots=True)
class PricedCost:
    """A cost in USD; ``priced`` is False when some of the usage had no price (it counts as 0)."""

    usd: Decimal = Decimal(0)
    priced: bool = True


def usage_cost(
    price: ModelPrice | None, amounts: UsageAmounts, *, quality: str | None = None, size: str | None = None
) -> PricedCost:
    """The cost of ``amounts`` under ``price``; images are priced by ``quality`` and ``size``."""
    if price is None:
        return PricedCost(Decimal(0), priced=amounts.requests == 0)
    cached = min(max(amounts.cached_tokens, 0), max(amounts.input_tokens, 0))
    uncached = max(amounts.input_tokens, 0) - cached
    usd = (
        uncached * price.input
        + cached * price.cached_input_price
        + max(amounts.output_tokens, 0) * price.output
    ) / PER_MILLION
    if amounts.images <= 0 or not price.images:
        return PricedCost(usd)
    per_image = price.image_price(quality, size)
    if per_image is None:
        return PricedCost(usd, priced=False)
    return PricedCost(usd + amounts.images * per_image)
