"""What a rate-limit decision looks like on the wire: ``x-ratelimit-*`` headers and 429 errors.

Headers per limited dimension (requests, tokens, and for image models images):
``x-ratelimit-limit-<dim>`` (the per-minute limit), ``x-ratelimit-remaining-<dim>`` and
``x-ratelimit-reset-<dim>`` (time until the per-minute budget is full again, written like ``1s``,
``20ms`` or ``1m30.5s``). A dimension that is not limited sends no headers.
"""

from __future__ import annotations

import math

from simulator.errors import ApiError, rate_limit_message, request_too_large_message, retry_after_headers
from simulator.ratelimit import DimensionState, Rejection

_UNITS = {"requests": ("requests", "RPM"), "tokens": ("tokens", "TPM"), "images": ("images", "IPM")}


def format_duration(seconds: float) -> str:
    """A duration the way hosted APIs write it: ``20ms``, ``1.146s``, ``6m0s``, ``1m30.5s``, ``1h2m3s``."""
    if seconds <= 0:
        return "0s"
    millis = math.ceil(seconds * 1000 - 1e-6)
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def ratelimit_headers(states: tuple[DimensionState, ...]) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers for the limited dimensions of a decision."""
    headers: dict[str, str] = {}
    for state in states:
        name = state.dimension
        headers[f"x-ratelimit-limit-{name}"] = str(state.limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(state.remaining)
        headers[f"x-ratelimit-reset-{name}"] = format_duration(state.reset_seconds)
    return headers


def rejection_error(model: str, rejection: Rejection) -> ApiError:
    """The 429 ``rate_limit_exceeded`` error for a refused call, with retry-after headers when it can fit."""
    unit, short = _UNITS[rejection.dimension]
    if rejection.retry_after is None:
        message = request_too_large_message(model, unit, short, rejection.limit, rejection.requested)
        return ApiError(429, message, unit, None, "rate_limit_exceeded")
    wait = format_duration(rejection.retry_after)
    message = rate_limit_message(
        model, unit, short, rejection.limit, rejection.used, rejection.requested, wait
    )
    return ApiError(
        429, message, unit, None, "rate_limit_exceeded", retry_after_headers(rejection.retry_after)
    )
