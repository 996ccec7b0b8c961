"""The HTTP contract of ``/v1/admin/budgets``: a budget's limits in, its limits and spend out."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.budgets.limits import BudgetLimits
from domain.budgets.periods import Period
from domain.budgets.status import BudgetStatus

MAX_LIMIT = 10**12


class BudgetIn(BaseModel):
    """A budget's limits; a limit left out (or null) is no limit. Setting replaces all four."""

    model_config = ConfigDict(extra="forbid")

    usd_per_day: Decimal | None = Field(default=None, ge=0, le=MAX_LIMIT, allow_inf_nan=False)
    usd_per_month: Decimal | None = Field(default=None, ge=0, le=MAX_LIMIT, allow_inf_nan=False)
    tokens_per_day: int | None = Field(default=None, ge=0, le=MAX_LIMIT, strict=True)
    tokens_per_month: int | None = Field(default=None, ge=0, le=MAX_LIMIT, strict=True)
    allow_unpriced: bool = Field(
        default=False,
        strict=True,
        description="let jobs for models without a price through a USD limit (as $0)",
    )

    @field_validator("usd_per_day", "usd_per_month", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("an amount in USD must be a number")
        return value

    def limits(self) -> BudgetLimits:
        return BudgetLimits(
            usd_per_day=self.usd_per_day,
            usd_per_month=self.usd_per_month,
            tokens_per_day=self.tokens_per_day,
            tokens_per_month=self.tokens_per_month,
            allow_unpriced=self.allow_unpriced,
        )


class PeriodOut(BaseModel):
    period: Period
    starts: str = Field(description="the UTC day the period began (YYYY-MM-DD)")
    resets_at: datetime
    limit_usd: float | None
    spent_usd: float
    reserved_usd: float = Field(description="estimates held by work admitted and not yet settled")
    limit_tokens: int | None
    spent_tokens: int
    reserved_tokens: int


class BudgetOut(BaseModel):
    object: Literal["budget"] = "budget"
    tenant: str
    key_id: str | None = Field(description="the API key the budget is for; null for the whole tenant")
    usd_per_day: float | None
    usd_per_month: float | None
    tokens_per_day: int | None
    tokens_per_month: int | None
    allow_unpriced: bool
    periods: list[PeriodOut]


class BudgetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BudgetOut]


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def budget_out(status: BudgetStatus) -> BudgetOut:
    limits = status.limits
    return BudgetOut(
        tenant=status.tenant_id,
        key_id=status.key_id or None,
        usd_per_day=_usd(limits.usd_per_day),
        usd_per_month=_usd(limits.usd_per_month),
        tokens_per_day=limits.tokens_per_day,
        tokens_per_month=limits.tokens_per_month,
        allow_unpriced=limits.allow_unpriced,
        periods=[
            PeriodOut(
                period=spend.period,
                starts=spend.starts.isoformat(),
                resets_at=spend.resets_at,
                limit_usd=_usd(spend.limit_usd),
                spent_usd=float(spend.spent_usd),
                reserved_usd=float(spend.reserved_usd),
                limit_tokens=spend.limit_tokens,
                spent_tokens=spend.spent_tokens,
                reserved_tokens=spend.reserved_tokens,
            )
            for spend in status.periods
        ],
    )
