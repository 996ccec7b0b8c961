"""Usage and cost, summed in SQL from the usage columns stored with each job.

One ``GROUP BY`` query (the same on SQLite and PostgreSQL) sums requests, input, output, cached and
reasoning tokens and images per asked-for key, per model and per UTC day, and for image jobs per size
and quality. Each of those rows is priced with the entry in effect for its model on its day
(``config.prices``), so a price change never re-prices older usage, and the priced rows are added up
per key. The number of rows priced is bounded by keys x models x days, never by the number of jobs.

Jobs run through the provider's Batch API (``execution_path = 'provider_batch'``) are priced at the
model's batch price (``ModelPrice.batch_price``), and reported apart: ``batch_requests``,
``batch_cost_usd``, ``live_cost_usd``, and ``savings_usd``, what those batch jobs would have cost live.

A job counts once its upstream call has completed: every succeeded job, and a job cancelled while its
call was running when that call returned usage (the call happened and is billed). Its time is
``finished_at``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from config.prices import PriceTable
from domain.status import JobStatus
from domain.storage.dialect import dialect_of
from domain.storage.models import PROVIDER_BATCH_PATH, Job
from domain.tokens.costs import UsageAmounts, usage_cost

__all__ = ["GroupBy", "UsageRow", "usage_report"]


class GroupBy(StrEnum):
    """What usage is summed by."""

    model = "model"
    tier = "tier"
    day = "day"
    tenant = "tenant"


@dataclass
class UsageRow:
    """The usage and cost of one key (a model, tier, UTC day or tenant)."""

    key: str
    amounts: UsageAmounts = field(default_factory=UsageAmounts)
    cost_usd: Decimal = Decimal(0)
    unpriced_requests: int = 0
    batch_requests: int = 0
    batch_cost_usd: Decimal = Decimal(0)
    savings_usd: Decimal = Decimal(0)

    @property
    def live_cost_usd(self) -> Decimal:
        return self.cost_usd - self.batch_cost_usd


def counted_jobs() -> Any:
    """The jobs whose upstream call completed: they carry usage."""
    return or_(
        Job.status == JobStatus.succeeded.value,
        and_(Job.status == JobStatus.cancelled.value, or_(Job.total_tokens > 0, Job.images > 0)),
    )


def _day_expression(session: Session) -> Any:
    return dialect_of(session).utc_day(Job.finished_at)


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_utc(moment: datetime) -> datetime:
    """A datetime in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def usage_report(
    session: Session,
    prices: PriceTable,
    *,
    group_by: GroupBy,
    tenant_id: str | None,
    start: datetime | None = None,
    end: datetime | None = None,
    batch_id: str | None = None,
) -> list[UsageRow]:
    """Usage per key, ordered by key, for jobs finished in ``[start, end)``; ``tenant_id=None`` is all;
    ``batch_id`` narrows it to one batch's jobs."""
    day = _day_expression(session).label("day")
    size = Job.request["size"].as_string().label("size")
    quality = Job.request["quality"].as_string().label("quality")
    path = func.coalesce(Job.execution_path, "live").label("path")
    grouping: list[Any] = [Job.model, day, size, quality, path]
    keys = {GroupBy.model: Job.model, GroupBy.tier: Job.tier, GroupBy.tenant: Job.tenant_id}
    if group_by in keys:
        grouping.insert(0, keys[group_by].label("key"))
    query = select(
        *grouping,
        func.count().label("requests"),
        func.coalesce(func.sum(Job.prompt_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(Job.completion_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(Job.cached_tokens), 0).label("cached_tokens"),
        func.coalesce(func.sum(Job.reasoning_tokens), 0).label("reasoning_tokens"),
        func.coalesce(func.sum(Job.images), 0).label("images"),
    ).where(counted_jobs(), Job.finished_at.is_not(None))
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    if start is not None:
        query = query.where(Job.finished_at >= as_utc(start))
    if end is not None:
        query = query.where(Job.finished_at < as_utc(end))
    query = query.group_by(*grouping)
    return _price(session.execute(query), prices, group_by)


def _price(rows: Iterable[Any], prices: PriceTable, group_by: GroupBy) -> list[UsageRow]:
    report: dict[str, UsageRow] = defaultdict(lambda: UsageRow(key=""))
    for row in rows:
        on = _as_date(row.day)
        name = on.isoformat() if group_by == GroupBy.day else str(row.key)
        amounts = UsageAmounts(
            requests=int(row.requests),
            input_tokens=int(row.input_tokens),
            output_tokens=int(row.output_tokens),
            cached_tokens=int(row.cached_tokens),
            reasoning_tokens=int(row.reasoning_tokens),
            images=int(row.images),
        )
        live_price = prices.price_on(row.model, on)
        batched = row.path == PROVIDER_BATCH_PATH
        price = live_price.batch_price() if batched and live_price is not None else live_price
        cost = usage_cost(price, amounts, quality=row.quality, size=row.size)
        entry = report[name]
        entry.key = name
        entry.amounts = entry.amounts + amounts
        entry.cost_usd += cost.usd
        if batched:
            entry.batch_requests += amounts.requests
            entry.batch_cost_usd += cost.usd
            live = usage_cost(live_price, amounts, quality=row.quality, size=row.size)
            entry.savings_usd += live.usd - cost.usd
        if not cost.priced:
            entry.unpriced_requests += amounts.requests
    return [report[name] for name in sorted(report)]
