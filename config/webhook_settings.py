"""Reading the webhook settings: ``whsec_`` secrets, the retry schedule and allow-listed networks.

Pure helpers that ``config.settings`` calls from its validators. Lists come from the environment as
comma- or space-separated text: ``BATCHERY_WEBHOOK_SECRETS="whsec_new whsec_old"``,
``BATCHERY_WEBHOOK_RETRY_SCHEDULE="0,5s,5m,30m,2h,5h,10h,10h"``,
``BATCHERY_WEBHOOK_ALLOWED_NETWORKS="10.20.0.0/16,127.0.0.1/32"``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
MAX_SCHEDULE_ENTRIES = 50
MAX_SCHEDULE_DELAY = 7 * 24 * 3600.0

DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""At once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: the delay before each attempt."""

DEVELOPMENT_SECRET = "whsec_" + base64.b64encode(b"batchery-development-webhooks!!").decode()
"""Signs webhooks on a laptop when no secret is configured; refused in production."""

_SPLIT = re.compile(r"[\s,]+")
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$", re.ASCII)
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def split_list(value: Any) -> Any:
    """Split comma- or space-separated text into a list; other values pass through unchanged."""
    if isinstance(value, str):
        return [part for part in _SPLIT.split(value.strip()) if part]
    return value


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret. The error never repeats the secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret must look like {SECRET_PREFIX}<base64>")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret must be base64 after the whsec_ prefix") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"a webhook secret must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (got {len(key)})"
        )
    return key


def is_placeholder_webhook_secret(secret: str) -> bool:
    """The development secret, or a key made of one repeated byte (``whsec_AAAA…``)."""
    if secret == DEVELOPMENT_SECRET:
        return True
    try:
        key = decode_secret(secret)
    except ValueError:
        return True
    return len(set(key)) <= 1


def parse_delay(text: str | float | int) -> float:
    """Seconds in ``90``, ``1.5``, ``250ms``, ``5s``, ``5m`` or ``2h``."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DELAY.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not a delay like 0, 5s, 5m, 2h or 250ms")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 <= seconds <= MAX_SCHEDULE_DELAY:
        raise ValueError(f"a retry delay must be between 0 and {MAX_SCHEDULE_DELAY:.0f} seconds")
    return seconds


def parse_schedule(value: Any) -> tuple[float, ...]:
    """The retry schedule: the delay before each attempt, the first usually 0 (at once)."""
    items = split_list(value)
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("the retry schedule needs at least one delay, e.g. 0,5s,5m")
    if len(items) > MAX_SCHEDULE_ENTRIES:
        raise ValueError(f"the retry schedule holds at most {MAX_SCHEDULE_ENTRIES} delays")
    return tuple(parse_delay(item) for item in items)
