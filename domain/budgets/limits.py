"""Setting and reading budgets: a tenant's, or one of its API keys'.

A budget holds up to four limits (USD and tokens, per UTC day and per UTC month); a limit left out is
no limit, and a tenant without a budget row has no limit at all. Setting a budget replaces all of its
limits at once. ``allow_unpriced`` lets jobs for models without a price in the price table through a
USD limit (they count as $0); without it they are refused with 422 ``unpriced_model``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from domain.budgets.pricing import NANO, to_nano
from domain.errors import InvalidRequest, NotFound
from domain.ids import TENANT_NAME
from domain.storage.models import ApiKey, utcnow
from domain.storage.spend_models import SpendBudget

TENANT_BUDGET = ""
"""The ``key_id`` of a budget that covers the whole tenant."""


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """The limits of one budget; None is no limit."""

    usd_per_day: Decimal | None = None
    usd_per_month: Decimal | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    allow_unpriced: bool = False

    @property
    def has_usd_limit(self) -> bool:
        return self.usd_per_day is not None or self.usd_per_month is not None


def limits_of(row: SpendBudget) -> BudgetLimits:
    def usd(nano: int | None) -> Decimal | None:
        return None if nano is None else Decimal(nano) / NANO

    return BudgetLimits(
        usd_per_day=usd(row.usd_per_day_nano),
        usd_per_month=usd(row.usd_per_month_nano),
        tokens_per_day=row.tokens_per_day,
        tokens_per_month=row.tokens_per_month,
        allow_unpriced=row.allow_unpriced,
    )


def _check(tenant_id: str, limits: BudgetLimits) -> None:
    if not TENANT_NAME.match(tenant_id):
        raise InvalidRequest(
            "tenant: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            param="tenant",
        )
    for name in ("usd_per_day", "usd_per_month", "tokens_per_day", "tokens_per_month"):
        value = getattr(limits, name)
        if value is not None and (value < 0 or (isinstance(value, Decimal) and not value.is_finite())):
            raise InvalidRequest(f"{name}: a limit cannot be negative", param=name)
        if value is not None and value > 10**12:
            raise InvalidRequest(f"{name}: at most 1e12", param=name)


def set_budget(session: Session, limits: BudgetLimits, *, tenant_id: str, key_id: str | None = None) -> None:
    """Create or replace the budget of ``tenant_id`` (or of its key ``key_id``, which must exist)."""
    _check(tenant_id, limits)
    if key_id:
        key = session.get(ApiKey, key_id)
        if key is None or key.tenant_id != tenant_id:
            raise NotFound(f"tenant {tenant_id!r} has no API key {key_id!r}", param="key_id")
    row = session.get(SpendBudget, (tenant_id, key_id or TENANT_BUDGET))
    if row is None:
        row = SpendBudget(tenant_id=tenant_id, key_id=key_id or TENANT_BUDGET, created_at=utcnow())
        session.add(row)
    row.usd_per_day_nano = None if limits.usd_per_day is None else to_nano(limits.usd_per_day)
    row.usd_per_month_nano = None if limits.usd_per_month is None else to_nano(limits.usd_per_month)
    row.tokens_per_day = limits.tokens_per_day
    row.tokens_per_month = limits.tokens_per_month
    row.allow_unpriced = limits.allow_unpriced
    row.updated_at = utcnow()
    session.flush()
    BUDGET_BOOK.forget(tenant_id=tenant_id)


def clear_budget(session: Session, *, tenant_id: str, key_id: str | None = None) -> bool:
    """Remove a budget (its counters stay, for the record); False when there was none."""
    removed = session.execute(
        delete(SpendBudget).where(
            SpendBudget.tenant_id == tenant_id, SpendBudget.key_id == (key_id or TENANT_BUDGET)
        )
    )
    BUDGET_BOOK.forget(tenant_id=tenant_id)
    return bool(getattr(removed, "rowcount", 0))


def list_budgets(session: Session, *, tenant_id: str | None) -> list[SpendBudget]:
    """Every budget (of one tenant; None for all), by tenant then key (the tenant's own first)."""
    query = select(SpendBudget).order_by(SpendBudget.tenant_id, SpendBudget.key_id)
    if tenant_id is not None:
        query = query.where(SpendBudget.tenant_id == tenant_id)
    return list(session.scalars(query))


class BudgetBook:
    """Which budgets each tenant has, as this process last read them: at most ``ttl`` seconds old, so a
    tenant without a budget costs no query per submission. A budget set or cleared through this process
    is seen at once; one set elsewhere (another API process, the CLI) within ``ttl`` seconds."""

    def __init__(self, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[dict[str, BudgetLimits], float]] = {}

    def budgets_of(self, session: Session, *, tenant_id: str) -> dict[str, BudgetLimits]:
        """The tenant's budgets by ``key_id`` (``TENANT_BUDGET`` for the tenant's own)."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(tenant_id)
            if seen is not None and now - seen[1] < self.ttl:
                return seen[0]
        found = {row.key_id: limits_of(row) for row in list_budgets(session, tenant_id=tenant_id)}
        with self._lock:
            if len(self._seen) >= 10_000:
                self._seen.clear()
            self._seen[tenant_id] = (found, now)
        return found

    def forget(self, *, tenant_id: str | None) -> None:
        """Drop what is known of ``tenant_id`` (None: of every tenant)."""
        with self._lock:
            if tenant_id is None:
                self._seen.clear()
            else:
                self._seen.pop(tenant_id, None)


BUDGET_BOOK = BudgetBook()
"""This process's book (the API reads it on every submission)."""
