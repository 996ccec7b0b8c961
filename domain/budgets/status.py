"""Spend against each budget now: for ``batchery budgets show``, the admin API, ``/metrics`` and
``batchery top``. Two queries, whatever the number of budgets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from domain.budgets.limits import BudgetLimits, limits_of, list_budgets
from domain.budgets.periods import Period, period_reset, period_start
from domain.budgets.pricing import NANO
from domain.storage.spend_models import SpendCounter


@dataclass(frozen=True, slots=True)
class PeriodSpend:
    """One budget's current day or month: its limits, what is spent and what is reserved."""

    tenant_id: str
    key_id: str
    period: Period
    starts: date
    resets_at: datetime
    limit_usd: Decimal | None
    spent_usd: Decimal
    reserved_usd: Decimal
    limit_tokens: int | None
    spent_tokens: int
    reserved_tokens: int


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget: its limits and its current day and month."""

    tenant_id: str
    key_id: str
    limits: BudgetLimits
    periods: tuple[PeriodSpend, ...]


def budget_status(session: Session, *, now: datetime, tenant_id: str | None) -> list[BudgetStatus]:
    """Every budget (of one tenant), with its spend in the current UTC day and month."""
    budgets = list_budgets(session, tenant_id=tenant_id)
    if not budgets:
        return []
    starts = {Period.day: period_start(Period.day, now), Period.month: period_start(Period.month, now)}
    query = select(SpendCounter).where(
        or_(
            (SpendCounter.period == Period.day.value) & (SpendCounter.starts == starts[Period.day]),
            (SpendCounter.period == Period.month.value) & (SpendCounter.starts == starts[Period.month]),
        )
    )
    if tenant_id is not None:
        query = query.where(SpendCounter.tenant_id == tenant_id)
    counters = {(c.tenant_id, c.key_id, c.period): c for c in session.scalars(query)}
    found = []
    for row in budgets:
        limits = limits_of(row)
        periods = []
        for period, begins in starts.items():
            counter = counters.get((row.tenant_id, row.key_id, period.value))
            periods.append(
                PeriodSpend(
                    tenant_id=row.tenant_id,
                    key_id=row.key_id,
                    period=period,
                    starts=begins,
                    resets_at=period_reset(period, begins),
                    limit_usd=limits.usd_per_day if period == Period.day else limits.usd_per_month,
                    spent_usd=Decimal(counter.spent_nano if counter else 0) / NANO,
                    reserved_usd=Decimal(counter.reserved_nano if counter else 0) / NANO,
                    limit_tokens=limits.tokens_per_day if period == Period.day else limits.tokens_per_month,
                    spent_tokens=counter.spent_tokens if counter else 0,
                    reserved_tokens=counter.reserved_tokens if counter else 0,
                )
            )
        found.append(BudgetStatus(row.tenant_id, row.key_id, limits, tuple(periods)))
    return found
