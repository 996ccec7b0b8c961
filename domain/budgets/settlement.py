"""Settling reservations: a finished job's or batch's estimate is replaced by its real cost.

``settle_finished`` finds reservations whose holder has ended (a job succeeded, failed or was
cancelled; a batch reached a terminal status), prices the usage stored with its jobs exactly as
``GET /v1/usage`` does, and in one transaction per holder marks the reservation settled (a conditional
``UPDATE … WHERE settled_at IS NULL``, so a holder is settled once however many sweeps race) and moves
its amounts on the counters it was charged to: the estimate leaves ``reserved``, the real cost joins
``spent``. A failed or cancelled job that never completed a call stored no usage, so it settles to 0.

The cost lands in the period the work was admitted in. The workers' periodic sweep calls this; until
then a finished job's estimate (which errs high) stays reserved.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, case, select, update
from sqlalchemy.orm import Session

from config.prices import PriceTable
from domain.budgets.limits import TENANT_BUDGET
from domain.budgets.periods import Period
from domain.budgets.pricing import real_usd_nano, to_nano
from domain.status import FINISHED_JOB_STATUSES
from domain.storage.models import PROVIDER_BATCH_PATH, Batch, Job
from domain.storage.spend_models import SpendCounter, SpendReservation
from domain.tokens.costs import UsageAmounts
from domain.tokens.usage_report import GroupBy, as_utc, usage_report

_RESERVATIONS: Table = SpendReservation.__table__  # type: ignore[assignment]
_COUNTERS: Table = SpendCounter.__table__  # type: ignore[assignment]
FINISHED_BATCH = ("failed", "completed", "expired", "cancelled")


def settle_finished(session: Session, prices: PriceTable, *, now: datetime, limit: int = 500) -> int:
    """Settle up to ``limit`` finished holders' reservations; the caller commits. Returns how many."""
    settled = 0
    jobs = session.execute(
        select(SpendReservation, Job)
        .join(Job, Job.id == SpendReservation.holder_id)
        .where(
            SpendReservation.settled_at.is_(None),
            SpendReservation.holder == "job",
            Job.status.in_(FINISHED_JOB_STATUSES),
        )
        .limit(limit)
    ).all()
    for reservation, job in jobs:
        settled += _settle(session, reservation, *_job_cost(job, prices), now=now)
    batches = session.execute(
        select(SpendReservation)
        .join(Batch, Batch.id == SpendReservation.holder_id)
        .where(
            SpendReservation.settled_at.is_(None),
            SpendReservation.holder == "batch",
            Batch.status.in_(FINISHED_BATCH),
        )
        .limit(limit)
    ).scalars()
    for reservation in list(batches):
        settled += _settle(session, reservation, *_batch_cost(session, reservation, prices), now=now)
    return settled


def _day(moment: datetime | None) -> date | None:
    return None if moment is None else as_utc(moment).date()


def _job_cost(job: Job, prices: PriceTable) -> tuple[int, int]:
    """(nano-dollars, tokens) of the usage stored with ``job``, priced on the day it finished."""
    day = _day(job.finished_at)
    if day is None:
        return 0, 0
    amounts = UsageAmounts(
        requests=1 if job.total_tokens or job.images else 0,
        input_tokens=job.prompt_tokens,
        output_tokens=job.completion_tokens,
        cached_tokens=job.cached_tokens,
        reasoning_tokens=job.reasoning_tokens,
        images=job.images,
    )
    request: dict[str, Any] = job.request if isinstance(job.request, dict) else {}
    price = prices.price_on(job.model, day)
    if price is not None and job.execution_path == PROVIDER_BATCH_PATH:
        price = price.batch_price()  # run through the provider's Batch API: its price, as /v1/usage has it
    return real_usd_nano(price, amounts, request), job.total_tokens


def _batch_cost(session: Session, reservation: SpendReservation, prices: PriceTable) -> tuple[int, int]:
    rows = usage_report(
        session,
        prices,
        group_by=GroupBy.model,
        tenant_id=reservation.tenant_id,
        batch_id=reservation.holder_id,
    )
    usd = sum((row.cost_usd for row in rows), start=Decimal(0))
    tokens = sum(row.amounts.input_tokens + row.amounts.output_tokens for row in rows)
    return to_nano(usd), tokens


def _counters(reservation: SpendReservation) -> Iterable[tuple[str, Period, date]]:
    names = [TENANT_BUDGET] if reservation.tenant_charged else []
    if reservation.key_id:
        names.append(reservation.key_id)
    for name in sorted(names):
        yield name, Period.day, reservation.day
        yield name, Period.month, reservation.month


def _settle(session: Session, reservation: SpendReservation, usd: int, tokens: int, *, now: datetime) -> int:
    held = _RESERVATIONS.c
    marked = session.execute(
        update(_RESERVATIONS)
        .where(held.holder_id == reservation.holder_id, held.settled_at.is_(None))
        .values(settled_at=now, spent_nano=usd, spent_tokens=tokens)
        .returning(held.holder_id)
    ).first()
    if marked is None:
        return 0
    counter = _COUNTERS.c
    for name, period, starts in _counters(reservation):
        session.execute(
            update(_COUNTERS)
            .where(
                counter.tenant_id == reservation.tenant_id,
                counter.key_id == name,
                counter.period == period.value,
                counter.starts == starts,
            )
            .values(
                reserved_nano=_less(counter.reserved_nano, reservation.reserved_nano),
                reserved_tokens=_less(counter.reserved_tokens, reservation.reserved_tokens),
                spent_nano=counter.spent_nano + usd,
                spent_tokens=counter.spent_tokens + tokens,
            )
        )
    return 1


def _less(column: Any, amount: int) -> Any:
    """``column - amount``, never below 0 (a counter made after the reservation never held it)."""
    return case((column >= amount, column - amount), else_=0)
