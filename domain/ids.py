"""Object ids: a prefix, then a part that sorts by creation time and is random after that.

Within one process, ids made in the same millisecond still sort in creation order: the random part
of the previous id is incremented (the monotonic rule of ULIDs).
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_RANDOM_BITS = 80
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


def job_id() -> str:
    return new_id("job")
