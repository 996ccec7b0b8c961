"""What a job is charged against its budgets: its estimate before it runs, its real cost after.

The estimate is the job's estimated tokens (``domain.tokens.estimates``: the prompt plus the most the
reply may take) priced with the entry of the price table in effect today (``config.prices``): prompt
tokens at the input price, the reply's room at the output price (an embedding's tokens are all
input; a generated image's tokens at the higher of the two), and images at their per-image price. A
cached prompt is charged as uncached: an estimate may only err high. The real cost is
``domain.tokens.costs.usage_cost`` of the usage stored with the job, on the day it finished, exactly as
``GET /v1/usage`` prices it.

USD amounts are whole nano-dollars (1e-9 USD): estimates round up, real costs to the nearest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any

from config.prices import PER_MILLION, ModelPrice, PriceTable
from domain.tokens.costs import UsageAmounts, usage_cost
from domain.tokens.estimates import window_need

NANO = Decimal(1_000_000_000)
"""Nano-dollars in one US dollar."""


@dataclass(frozen=True, slots=True)
class Charge:
    """What one job (or one batch line) reserves: tokens, and USD when its model is priced."""

    model: str
    tokens: int
    usd_nano: int
    priced: bool = True


def to_nano(usd: Decimal, *, round_up: bool = False) -> int:
    """``usd`` in whole nano-dollars."""
    rounding = ROUND_CEILING if round_up else ROUND_HALF_EVEN
    return int((usd * NANO).to_integral_value(rounding=rounding))


def usd_text(nano: int) -> str:
    """``1234567890`` nano-dollars as ``$1.23`` (more places below a cent, so nothing shows as 0)."""
    usd = Decimal(nano) / NANO
    if usd == 0 or abs(usd) >= Decimal("0.01"):
        return f"${usd.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN)}"
    return f"${usd.normalize():f}"


def _count(value: object, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, float) and not math.isfinite(value):
        return default
    return max(0, int(value))


def _split(kind: str, request: Mapping[str, Any], tokens: int) -> tuple[int, int]:
    """``tokens`` as (input, output) for pricing; (0, 0) means "price all at the higher price"."""
    if kind == "embedding":
        return tokens, 0
    need = window_need(kind, request)
    if need is None:
        return 0, 0
    prompt = min(tokens, need.prompt_tokens)
    return prompt, tokens - prompt


def _estimate_usd(kind: str, request: Mapping[str, Any], tokens: int, price: ModelPrice) -> Decimal | None:
    prompt, reply = _split(kind, request, tokens)
    if prompt or reply:
        usd = (prompt * price.input + reply * price.output) / PER_MILLION
    else:
        usd = tokens * max(price.input, price.output) / PER_MILLION
    if kind != "image" or not price.images:
        return usd
    size, quality = request.get("size"), request.get("quality")
    per_image = price.image_price(
        quality if isinstance(quality, str) else None, size if isinstance(size, str) else None
    )
    if per_image is None:
        return None
    return usd + _count(request.get("n"), 1) * per_image


def estimate_charge(
    kind: str, model: str, request: Mapping[str, Any], tokens: int, prices: PriceTable, day: date
) -> Charge:
    """The charge reserved for a job of ``kind`` for ``model`` estimated at ``tokens`` tokens."""
    price = prices.price_on(model, day)
    usd = _estimate_usd(kind, request, tokens, price) if price is not None else None
    if usd is None:
        return Charge(model, tokens, 0, priced=False)
    return Charge(model, tokens, to_nano(usd, round_up=True))


def real_usd_nano(price: ModelPrice | None, amounts: UsageAmounts, request: Mapping[str, Any]) -> int:
    """The real cost of ``amounts`` of usage (0 where unpriced), as ``GET /v1/usage`` prices it."""
    size, quality = request.get("size"), request.get("quality")
    cost = usage_cost(
        price,
        amounts,
        quality=quality if isinstance(quality, str) else None,
        size=size if isinstance(size, str) else None,
    )
    return to_nano(cost.usd)
