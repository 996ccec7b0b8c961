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
    return UsageReport(
        group_by=group_by,
        start=start,
        end=end,
        tenant=tenant,
        data=[UsageGroup(key=row.key, **_figures(row)) for row in rows],
        total=UsageFigures(**_figures(total)),
    )
