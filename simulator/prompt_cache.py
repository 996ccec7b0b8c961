"""A bounded memory of prompts already seen, so a repeated prompt reports cached tokens like a hosted API."""

from __future__ import annotations

import hashlib
from collections import OrderedDict


class PromptCache:
    """Remembers the digests of the last ``capacity`` prompts."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._digests: OrderedDict[bytes, None] = OrderedDict()

    def seen_before(self, prompt: bytes) -> bool:
        """Whether ``prompt`` was seen already; either way it is remembered as the most recent."""
        digest = hashlib.blake2b(prompt, digest_size=16).digest()
        if digest in self._digests:
            self._digests.move_to_end(digest)
            return True
        self._digests[digest] = None
        if len(self._digests) > self._capacity:
            self._digests.popitem(last=False)
        return False

    def clear(self) -> None:
        self._digests.clear()
