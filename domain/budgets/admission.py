"""Admission against budgets: reserve a submission's estimated charge, or refuse it.

``reserve`` runs inside the transaction that stores the work (one job, a bulk request's jobs, or a
batch), so work is stored if and only if its reservation is. For every budget that applies (the
tenant's, and the calling key's) and every period with a limit, one conditional statement adds the
charge to the period's counter::

    UPDATE spend_counters SET reserved_nano = reserved_nano + :usd, reserved_tokens = ...
     WHERE <counter> AND spent_nano + reserved_nano + :usd <= :limit AND <the same for tokens>

The check and the add are one atomic step in the database (PostgreSQL re-checks the condition on the
row it waited for; SQLite has one writer), so concurrent submissions can never reserve more than the
limit; a refused statement rolls the whole transaction back, other counters included. Counters are
updated in one fixed order, so two submissions never deadlock.

Over a limit the answer is 429 ``budget_exceeded`` naming the limit, what is spent and reserved, and
when the period resets (with ``Retry-After`` and ``X-Budget-Reset``). A model without a price under a
USD limit is refused with 422 ``unpriced_model`` unless the budget allows unpriced models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from domain.budgets.limits import BUDGET_BOOK, TENANT_BUDGET, BudgetLimits
from domain.budgets.periods import Period, period_reset, period_start
from domain.budgets.pricing import Charge, to_nano, usd_text
from domain.errors import InvalidRequest, TooManyRequests
from domain.storage.dialect import dialect_of
from domain.storage.spend_models import SpendCounter, SpendReservation


class BudgetExceeded(TooManyRequests):
    """This request would take the budget over its limit."""

    code = "budget_exceeded"

    def __init__(self, message: str, *, resets_at: datetime, now: datetime) -> None:
        super().__init__(message, retry_after=max(1, int((resets_at - now).total_seconds()) + 1))
        self.resets_at = resets_at

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "x-budget-reset": self.resets_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


class UnpricedModel(InvalidRequest):
    """The model has no price, and the budget has a USD limit."""

    code = "unpriced_model"


@dataclass(frozen=True, slots=True)
class Holder:
    """What a reservation is held for: a job or a batch, by id."""

    kind: str
    id: str


def _limits_for(period: Period, limits: BudgetLimits) -> tuple[int | None, int | None]:
    usd = limits.usd_per_day if period == Period.day else limits.usd_per_month
    tokens = limits.tokens_per_day if period == Period.day else limits.tokens_per_month
    return (None if usd is None else to_nano(usd)), tokens


def reserve(
    session: Session,
    *,
    tenant_id: str,
    key_id: str | None,
    charges: Sequence[tuple[Holder, Charge]],
    now: datetime,
) -> bool:
    """Reserve every charge against the budgets of ``tenant_id`` and ``key_id``; False when no budget
    applies (nothing is written). Raises BudgetExceeded or UnpricedModel; the caller rolls back."""
    budgets = BUDGET_BOOK.budgets_of(session, tenant_id=tenant_id)
    applying = {
        name: limits
        for name, limits in budgets.items()
        if name == TENANT_BUDGET or (key_id is not None and name == key_id)
    }
    if not applying or not charges:
        return False
    _refuse_unpriced(applying, [charge for _, charge in charges])
    usd = sum(charge.usd_nano for _, charge in charges)
    tokens = sum(charge.tokens for _, charge in charges)
    day, month = period_start(Period.day, now), period_start(Period.month, now)
    for name in sorted(applying):
        for period, starts in ((Period.day, day), (Period.month, month)):
            usd_limit, token_limit = _limits_for(period, applying[name])
            _ensure_counter(session, tenant_id, name, period, starts)
            counter = _COUNTERS.c
            statement = (
                update(_COUNTERS)
                .where(
                    counter.tenant_id == tenant_id,
                    counter.key_id == name,
                    counter.period == period.value,
                    counter.starts == starts,
                )
                .values(
                    reserved_nano=counter.reserved_nano + usd,
                    reserved_tokens=counter.reserved_tokens + tokens,
                )
                .returning(counter.key_id)
            )
            if usd_limit is not None:
                statement = statement.where(counter.spent_nano + counter.reserved_nano + usd <= usd_limit)
            if token_limit is not None:
                statement = statement.where(
                    counter.spent_tokens + counter.reserved_tokens + tokens <= token_limit
                )
            if session.execute(statement).first() is None:
                raise _exceeded(session, tenant_id, name, period, starts, applying[name], usd, tokens, now)
    rows = [
        {
            "holder_id": holder.id,
            "holder": holder.kind,
            "tenant_id": tenant_id,
            "tenant_charged": TENANT_BUDGET in applying,
            "key_id": key_id if key_id in applying else None,
            "day": day,
            "month": month,
            "reserved_nano": charge.usd_nano,
            "reserved_tokens": charge.tokens,
            "created_at": now,
        }
        for holder, charge in charges
    ]
    session.execute(insert(_RESERVATIONS), rows)
    return True


_RESERVATIONS: Table = SpendReservation.__table__  # type: ignore[assignment]
_COUNTERS: Table = SpendCounter.__table__  # type: ignore[assignment]


def _refuse_unpriced(applying: dict[str, BudgetLimits], charges: Iterable[Charge]) -> None:
    strict = [limits for limits in applying.values() if limits.has_usd_limit and not limits.allow_unpriced]
    if not strict:
        return
    unpriced = sorted({charge.model for charge in charges if not charge.priced})
    if unpriced:
        names = ", ".join(repr(model) for model in unpriced)
        raise UnpricedModel(
            f"model {names} has no price in the price table, and this tenant's budget has a USD limit; "
            "add a price (config/prices.toml) or allow unpriced models on the budget",
            param="model",
        )


def _ensure_counter(session: Session, tenant_id: str, key_id: str, period: Period, starts: object) -> None:
    statement = (
        dialect_of(session)
        .insert(_COUNTERS)
        .values(
            tenant_id=tenant_id,
            key_id=key_id,
            period=period.value,
            starts=starts,
            spent_nano=0,
            reserved_nano=0,
            spent_tokens=0,
            reserved_tokens=0,
        )
    )
    session.execute(statement.on_conflict_do_nothing())


def _exceeded(
    session: Session,
    tenant_id: str,
    key_id: str,
    period: Period,
    starts: object,
    limits: BudgetLimits,
    usd: int,
    tokens: int,
    now: datetime,
) -> BudgetExceeded:
    counter = session.execute(
        select(SpendCounter).where(
            SpendCounter.tenant_id == tenant_id,
            SpendCounter.key_id == key_id,
            SpendCounter.period == period.value,
            SpendCounter.starts == starts,
        )
    ).scalar_one()
    resets = period_reset(period, counter.starts)
    usd_limit, token_limit = _limits_for(period, limits)
    whose = (
        f"tenant {tenant_id!r}" if key_id == TENANT_BUDGET else f"API key {key_id} of tenant {tenant_id!r}"
    )
    label = "daily" if period == Period.day else "monthly"
    over_usd = usd_limit is not None and counter.spent_nano + counter.reserved_nano + usd > usd_limit
    if over_usd and usd_limit is not None:
        figures = (
            f"limit {usd_text(usd_limit)}, spent {usd_text(counter.spent_nano)} + reserved "
            f"{usd_text(counter.reserved_nano)}, this request needs an estimated {usd_text(usd)}"
        )
        kind = "USD"
    else:
        figures = (
            f"limit {token_limit} tokens, spent {counter.spent_tokens} + reserved "
            f"{counter.reserved_tokens}, this request needs an estimated {tokens}"
        )
        kind = "token"
    message = (
        f"budget exceeded: the {label} {kind} budget of {whose} would be exceeded ({figures}); "
        f"it resets at {resets.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    return BudgetExceeded(message, resets_at=resets, now=now)
