"""The spend budgets' tables (``domain.budgets``): limits, per-period counters and reservations.

Kept apart from ``domain.storage.models`` for size only; they share its ``Base`` (``alembic/env.py``
imports both, so the metadata holds every table).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.storage.models import Base, utcnow


class SpendBudget(Base):
    """A tenant's spending limits (``key_id`` empty), or one of its API keys' (``domain.budgets``).
    USD amounts are kept in whole nano-dollars (1e-9 USD), exact on every database; NULL is no limit."""

    __tablename__ = "spend_budgets"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True, default="")
    usd_per_day_nano: Mapped[int | None] = mapped_column(BigInteger, default=None)
    usd_per_month_nano: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger, default=None)
    allow_unpriced: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SpendCounter(Base):
    """What one budget has spent and holds reserved in one UTC day or month (from ``starts``)."""

    __tablename__ = "spend_counters"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    starts: Mapped[date] = mapped_column(Date, primary_key=True)
    spent_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class SpendReservation(Base):
    """The estimate a job (or a whole batch) holds against its budgets until it is settled to its real
    cost; ``key_id`` is set when a key's budget was charged too, ``tenant_charged`` when the tenant's was."""

    __tablename__ = "spend_reservations"

    holder_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(8))
    tenant_id: Mapped[str] = mapped_column(String(64))
    tenant_charged: Mapped[bool] = mapped_column(Boolean, default=True)
    key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    day: Mapped[date] = mapped_column(Date)
    month: Mapped[date] = mapped_column(Date)
    reserved_nano: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_nano: Mapped[int | None] = mapped_column(BigInteger, default=None)
    spent_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


UNSETTLED_PREDICATE = "settled_at IS NULL"
Index(
    "ix_spend_reservations_unsettled",
    SpendReservation.holder,
    SpendReservation.holder_id,
    postgresql_where=text(UNSETTLED_PREDICATE),
    sqlite_where=text(UNSETTLED_PREDICATE),
)
