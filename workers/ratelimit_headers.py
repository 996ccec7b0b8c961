"""Reading an upstream's rate-limit signals: ``x-ratelimit-*`` headers, Retry-After and 429 bodies.

Everything here is pure and forgiving. A value that cannot be read is ignored (treated as absent), never
raised, because a provider's odd header must not fail a job that otherwise succeeded.

Durations follow the form OpenAI and other Go-based servers send: one or more ``<number><unit>`` parts
with units ``h``, ``m``, ``s``, ``ms``, ``us``/``µs`` and ``ns``, e.g. ``1s``, ``6m0s``, ``20ms``,
``1m30.5s`` or ``0.5s``. A bare number is read as seconds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["RateLimitState", "parse_duration", "parse_rate_limit_headers", "retry_delay"]

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})(ms|us|µs|ns|h|m|s)", re.ASCII)
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|us|µs|ns|h|m|s))+", re.ASCII)
_BARE_NUMBER = re.compile(_NUMBER, re.ASCII)
_TRY_AGAIN = re.compile(
    rf"try\s+again\s+in\s+(?:(?P<go>(?:{_NUMBER}(?:ms|us|µs|ns|h|m|s))+)\b"
    rf"|(?P<num>{_NUMBER})\s*(?P<word>milliseconds?|seconds?|secs?|minutes?|mins?))",
    re.IGNORECASE | re.ASCII,
)
_WORD_SECONDS = {"milli": 1e-3, "sec": 1.0, "min": 60.0}


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """What an upstream response said about its rate limits; None where it said nothing readable.

    ``limit_*`` is the per-minute limit, ``remaining_*`` what is left of it now, and ``reset_*`` the
    seconds until the limit is fully restored.
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None

    @property
    def is_empty(self) -> bool:
        """True when no rate-limit header could be read."""
        return all(getattr(self, item.name) is None for item in fields(self))


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``1m30.5s``) or a bare number of seconds; None if unreadable."""
    value = text.strip()
    if _BARE_NUMBER.fullmatch(value):
        return _finite(float(value))
    if not _DURATION.fullmatch(value):
        return None
    total = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))
    return _finite(total)


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitState:
    """Read the ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers (any letter case)."""
    lower = {key.lower(): value for key, value in headers.items()}

    def count(name: str) -> int | None:
        raw = lower.get(f"x-ratelimit-{name}")
        return _count(raw) if raw is not None else None

    def duration(name: str) -> float | None:
        raw = lower.get(f"x-ratelimit-{name}")
        return parse_duration(raw) if raw is not None else None

    return RateLimitState(
        limit_requests=count("limit-requests"),
        limit_tokens=count("limit-tokens"),
        remaining_requests=count("remaining-requests"),
        remaining_tokens=count("remaining-tokens"),
        reset_requests=duration("reset-requests"),
        reset_tokens=duration("reset-tokens"),
    )


def retry_delay(
    headers: Mapping[str, str], body_text: str | None = None, *, now: float | None = None
) -> float | None:
    """Seconds the upstream asked us to wait, or None when it did not say.

    The first readable signal wins, in this order: ``retry-after-ms``, ``retry-after`` (seconds or an
    HTTP date, measured from ``now``, default the current time) and the "try again in 1.146s" text of an
    error body. A date in the past gives 0.0.
    """
    lower = {key.lower(): value for key, value in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms is not None:
        millis = _non_negative(raw_ms)
        if millis is not None:
            return millis / 1000.0
    raw = lower.get("retry-after")
    if raw is not None:
        seconds = _retry_after(raw, time.time() if now is None else now)
        if seconds is not None:
            return seconds
    return _from_body(body_text) if body_text else None


def _retry_after(raw: str, now: float) -> float | None:
    seconds = _non_negative(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _from_body(text: str) -> float | None:
    match = _TRY_AGAIN.search(text)
    if match is None:
        return None
    if match.group("go") is not None:
        return parse_duration(match.group("go"))
    word = match.group("word").lower()
    scale = next(factor for prefix, factor in _WORD_SECONDS.items() if word.startswith(prefix))
    return _finite(float(match.group("num")) * scale)


def _non_negative(raw: str) -> float | None:
    value = raw.strip()
    return _finite(float(value)) if _BARE_NUMBER.fullmatch(value) else None


def _count(raw: str) -> int | None:
    value = raw.strip()
    if value.isascii() and value.isdigit():
        return int(value)
    number = _non_negative(value)
    return int(number) if number is not None else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) and value >= 0 else None
