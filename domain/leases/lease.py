"""Claim, renew, check and expire: one lease helper for jobs, webhook deliveries and batch runs.

A table keeps its lease in an expiry column, and, when its holder is named by a token, in a holder
column (``LeasedTable``). A lease is *free* when it has no expiry or the expiry passed; a free row can
be claimed. A lease is *live* while its expiry lies ahead. Renewing extends every live lease of a set
of holders in one statement, and answers which ones the rows still carry: a lease that is missing was
lost (re-queued after it expired, or claimed again by another process).

Fencing stays with the table's own writes: a job's terminal write names the claim's token, a
delivery's names the attempt it started, so a holder that lost its lease cannot store anything.

The settings (``config.settings``: ``lease_seconds``, 30 s, renewed every ``heartbeat_seconds``, 5 s)
decide the timing. A holder that dies leaves a lease that passes at most one lease period after its
last renewal; a live one survives ``lease_seconds / heartbeat_seconds - 1`` missed renewals (a slow
or briefly unreachable database) before it loses anything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Column, ColumnElement, Table, and_, or_, select, update

from domain.storage.dialect import dialect_of
from domain.storage.sessions import Executor


@dataclass(frozen=True, slots=True)
class LeasedTable:
    """Which columns hold a table's lease: ``expires`` always, ``holder`` when a token names the holder."""

    name: str
    table: Table
    expires: Column[Any]
    holder: Column[Any] | None = None

    @property
    def key(self) -> Column[Any]:
        """The column a renewal names its leases by: the holder's token, or else the row's id."""
        return self.holder if self.holder is not None else self.table.c.id


def until(now: datetime, seconds: float) -> datetime:
    """When a lease taken or renewed at ``now`` for ``seconds`` passes."""
    return now + timedelta(seconds=seconds)


def is_free(leased: LeasedTable, now: Any) -> ColumnElement[bool]:
    """The row holds no lease, or its lease passed: it may be claimed."""
    return or_(leased.expires.is_(None), leased.expires < now)


def is_expired(leased: LeasedTable, now: Any) -> ColumnElement[bool]:
    """The row holds a lease that passed: its holder died or stalled."""
    return and_(leased.expires.is_not(None), leased.expires < now)


def is_live(leased: LeasedTable, now: Any) -> ColumnElement[bool]:
    """The row holds a lease that has not passed."""
    return and_(leased.expires.is_not(None), leased.expires >= now)


def held_by(leased: LeasedTable, token: Any) -> ColumnElement[bool]:
    """The row's lease is the one ``token`` took (the fencing predicate)."""
    assert leased.holder is not None, f"{leased.name}: its lease names no holder"
    return cast(ColumnElement[bool], leased.holder == token)


def taken(leased: LeasedTable, expires: Any, token: Any = None) -> dict[str, Any]:
    """The values that claim a lease until ``expires`` (a time or a bound parameter)."""
    values: dict[str, Any] = {leased.expires.key: expires}
    if leased.holder is not None:
        values[leased.holder.key] = token
    return values


def released(leased: LeasedTable) -> dict[str, Any]:
    """The values that give a lease up."""
    values: dict[str, Any] = {leased.expires.key: None}
    if leased.holder is not None:
        values[leased.holder.key] = None
    return values


def renew(
    executor: Executor, leased: LeasedTable, keys: Collection[str], *, now: datetime, seconds: float
) -> set[str]:
    """Extend, in one statement, the leases named by ``keys`` (tokens, or row ids) that the rows still
    carry, to ``seconds`` from ``now``; answers the keys renewed. A job's lease is renewed while its
    row carries the token, even past its expiry (no one took it meanwhile). A lease named by the row's
    id is renewed only while it is live, so a run that lost it never extends another's, and, where the
    database locks rows, only if no transaction holds the row: a batch run's own long transaction must
    not stall the heartbeat (that run's lease is renewed by a later round)."""
    if not keys:
        return set()
    named = leased.key.in_(list(keys))
    if leased.holder is not None:
        still_held: ColumnElement[bool] = named
    else:
        free_rows = dialect_of(executor).lock_skipping(
            select(leased.table.c.id).where(named, is_live(leased, now))
        )
        still_held = leased.table.c.id.in_(free_rows.scalar_subquery())
    values: dict[str, Any] = {leased.expires.key: until(now, seconds)}
    if "updated_at" in leased.table.c:  # a renewal changes nothing a reader sees
        values["updated_at"] = leased.table.c.updated_at
    statement = update(leased.table).where(still_held).values(values).returning(leased.key)
    return {str(row[0]) for row in executor.execute(statement)}
