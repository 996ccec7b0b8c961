"""Object ids: a prefix, then a part that sorts by creation time and is random after that; and the
shape of a tenant's name, which every id-bearing row carries.

Within one process, ids made in the same millisecond still sort in creation order: the random part
of the previous id is incremented (the monotonic rule of ULIDs).
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A tenant's name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit."""

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_RANDOM_BITS = 80
_B32 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
"""base64's base32 alphabet to Crockford's, digit for digit."""
_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str, *, now_ms: int | None = None) -> str:
    """``<prefix>_`` + 10 chars of milliseconds + 16 chars of randomness (a ULID-like, sortable id)."""
    global _last
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        last_ms, last_random = _last
        if millis <= last_ms and last_random + 1 < 2**_RANDOM_BITS:
            millis, random_part = last_ms, last_random + 1
        else:
            random_part = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big")
        _last = (millis, random_part)
    return f"{prefix}_{_encode(millis, 10)}{_encode(random_part, 16)}"


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` ids in creation order, as ``count`` calls of ``new_id`` would make them, but quicker
    (the random parts are consecutive and encoded by ``base64``, in C)."""
    global _last
    millis = int(time.time() * 1000)
    with _lock:
        last_ms, last_random = _last
        if millis <= last_ms and last_random + count < 2**_RANDOM_BITS:
            millis, first = last_ms, last_random + 1
        else:
            first = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big") % (2**_RANDOM_BITS - count)
        _last = (millis, first + count - 1)
    head = f"{prefix}_{_encode(millis, 10)}"
    return [
        head + base64.b32encode((first + offset).to_bytes(_RANDOM_BITS // 8, "big")).translate(_B32).decode()
        for offset in range(count)
    ]


def job_id() -> str:
    return new_id("job")
