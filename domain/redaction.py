"""Removing secrets from text before it is logged or stored.

What is recognised by its shape: ``Bearer`` tokens and ``Authorization`` header values, provider keys
(``sk-…``), webhook secrets (``whsec_…``), batchery keys (``bk_…``), ``api-key``/``password``/``secret``
assignments, and passwords in URLs (``redis://:pw@host``). What is recognised by its value: every secret
the process was configured with (``remember_secrets``), whatever its shape (an Azure key is plain hex).

``redact`` works on text, ``redact_value`` on JSON-like values (dicts, lists, strings). Both are pure
apart from the process-wide list of remembered secrets, which start-up fills once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
_MIN_LITERAL = 8
"""Remembered secrets shorter than this are not replaced by value (they would mangle ordinary text)."""

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer x / Basic x / x, as a header line, a dict repr or JSON
    (
        re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+"),
        rf"\1{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{MASK}"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), f"sk-{MASK}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]{6,}"), f"whsec_{MASK}"),
    (re.compile(r"\bbk_[A-Za-z0-9_\-]{6,}"), f"bk_{MASK}"),
    (
        re.compile(
            r"(?i)\b((?:x-)?(?:api[-_]?key|password|passwd|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+"
        ),
        rf"\1{MASK}",
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{MASK}@"),
)

_lock = threading.Lock()
_literals: tuple[str, ...] = ()


def remember_secrets(secrets: Iterable[str]) -> None:
    """Add secrets (provider keys, webhook secrets, passwords) to be replaced wherever they appear."""
    global _literals
    fresh = {secret for secret in secrets if len(secret) >= _MIN_LITERAL}
    with _lock:
        # longest first, so a secret that contains another is replaced whole
        _literals = tuple(sorted(set(_literals) | fresh, key=len, reverse=True))


def redact(text: str) -> str:
    """``text`` with every recognised secret replaced by ``[REDACTED]``."""
    for literal in _literals:
        if literal in text:
            text = text.replace(literal, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with every string (keys included) passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(key)): redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    return value
