"""The upstream's own limits, learned from its ``x-ratelimit-limit-*`` headers.

When the account's real limit is below what ``tiers.toml`` says (a lower usage tier, a limit shared
with another client, a provider that changed it), pacing at the configured figure would mean a 429
every few seconds. Every response carries the real per-minute limits, so each worker process keeps the
lowest figure the upstream reported for each budget and paces with it: the bucket in Redis then refills
at the real rate, and every process converges on it within one response. A header at or above the
configured figure forgets what was learned, so a raised limit is used again at once.
"""

from __future__ import annotations

import dataclasses
import threading

from workers.buckets import Budget
from workers.ratelimit_headers import RateLimitState


class LearnedLimits:
    """Per budget name, the upstream's requests and tokens per minute where lower than configured."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._learned: dict[str, tuple[int | None, int | None]] = {}

    def learn(self, configured: Budget, state: RateLimitState) -> None:
        """Remember (or forget) the upstream's limits for ``configured``'s budget."""
        if state.limit_requests is None and state.limit_tokens is None:
            return
        with self._lock:
            requests, tokens = self._learned.get(configured.name, (None, None))
            if state.limit_requests is not None:
                requests = state.limit_requests if 0 < state.limit_requests < configured.rpm else None
            if state.limit_tokens is not None:
                tokens = state.limit_tokens if 0 < state.limit_tokens < configured.tpm else None
            if requests is None and tokens is None:
                self._learned.pop(configured.name, None)
            else:
                self._learned[configured.name] = (requests, tokens)

    def apply(self, configured: Budget) -> Budget:
        """``configured`` with any lower limit the upstream reported."""
        with self._lock:
            learned = self._learned.get(configured.name)
        if learned is None:
            return configured
        requests, tokens = learned
        return dataclasses.replace(
            configured,
            rpm=requests if requests is not None else configured.rpm,
            tpm=tokens if tokens is not None else configured.tpm,
        )
