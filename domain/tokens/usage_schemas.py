"""The HTTP contract of ``GET /v1/usage``: sums of stored usage and their cost, per key."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from pydantic import BaseModel, Field

from domain.tokens.usage_report import GroupBy, UsageRow

COST_QUANTUM = Decimal("1e-9")
"""Costs are reported to the billionth of a dollar, well below any single call's price."""


class UsageFigures(BaseModel):
    """Summed usage and its cost."""

    requests: int = Field(description="jobs whose upstream call completed")
    input_tokens: int
    output_tokens: int
    cached_tokens: int = Field(description="input tokens served from the provider's prompt cache")
    reasoning_tokens: int = Field(description="output tokens spent on reasoning (part of output_tokens)")
    images: int
    cost_usd: float = Field(description="at the price in effect on the day each job finished")
    unpriced_requests: int = Field(description="requests the price table has no price for (cost 0)")
    batch_requests: int = Field(default=0, description="requests run through the provider's Batch API")
    batch_cost_usd: float = Field(default=0.0, description="their cost, at the batch price")
    live_cost_usd: float = Field(default=0.0, description="the cost of the requests run live")
    savings_usd: float = Field(default=0.0, description="what the batch requests would have cost more live")


class UsageGroup(UsageFigures):
    key: str = Field(description="the model, tier, tenant or UTC day (YYYY-MM-DD)")


class UsageReport(BaseModel):
    object: Literal["usage.report"] = "usage.report"
    group_by: GroupBy
    start: datetime | None
    end: datetime | None
    tenant: str | None = Field(description="the tenant reported on; null when every tenant is")
    data: list[UsageGroup]
    total: UsageFigures


def _usd(amount: Decimal) -> float:
    return float(amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN))


def _figures(row: UsageRow) -> dict[str, int | float]:
    amounts = row.amounts
    return {
        "requests": amounts.requests,
        "input_tokens": amounts.input_tokens,
        "output_tokens": amounts.output_tokens,
        "cached_tokens": amounts.cached_tokens,
        "reasoning_tokens": amounts.reasoning_tokens,
        "images": amounts.images,
        "cost_usd": float(row.cost_usd.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)),
        "unpriced_requests": row.unpriced_requests,
        "batch_requests": row.batch_requests,
        "batch_cost_usd": _usd(row.batch_cost_usd),
        "live_cost_usd": _usd(row.live_cost_usd),
        "savings_usd": _usd(row.savings_usd),
    }


def usage_out(
    rows: list[UsageRow],
    *,
    group_by: GroupBy,
    start: datetime | None,
    end: datetime | None,
    tenant: str | None,
) -> UsageReport:
    total = UsageRow(key="")
    for row in rows:
        total.amounts = total.amounts + row.amounts
        total.cost_usd += row.cost_usd
        total.unpriced_requests += row.unpriced_requests
        total.batch_requests += row.batch_requests
        total.batch_cost_usd += row.batch_cost_usd
        total.savings_usd += row.savings_usd
    return UsageReport(
        group_by=group_by,
        start=start,
        end=end,
        tenant=tenant,
        data=[UsageGroup(key=row.key, **_figures(row)) for row in rows],
        total=UsageFigures(**_figures(total)),
    )
