"""The periods a budget counts over: the UTC calendar day and the UTC calendar month."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum


class Period(StrEnum):
    """A budget period; each starts at 00:00 UTC (the month on its first day)."""

    day = "day"
    month = "month"


def period_start(period: Period, now: datetime) -> date:
    """The first day of the ``period`` that holds ``now`` (read in UTC)."""
    today = now.astimezone(UTC).date()
    return today if period == Period.day else today.replace(day=1)


def period_reset(period: Period, starts: date) -> datetime:
    """When the ``period`` that began on ``starts`` ends and a fresh one begins (UTC)."""
    if period == Period.day:
        following = starts + timedelta(days=1)
    else:
        following = (starts.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime.combine(following, time(), tzinfo=UTC)
