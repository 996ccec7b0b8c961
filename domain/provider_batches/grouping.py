"""Which deferred jobs go together, and when a group is sent (pure).

Deferred jobs are grouped by the provider of their tier, their Batch API endpoint and their model: one
provider batch serves one endpoint and one model. A group is flushed once it holds ``flush_size`` jobs
or ``flush_bytes`` bytes of requests (a few large vision requests fill a file long before a thousand
small ones do), or its oldest job has waited ``flush_age`` seconds. One provider batch takes at most
``max_lines`` jobs and ``max_bytes`` of JSONL (the provider's file limits); a bigger group is sent as several.

The provider's Batch API also limits the tokens a model may have queued at once (its "enqueued
tokens", ``batch_queue_tokens`` in ``tiers.toml``): a provider batch takes only the jobs whose estimated
tokens fit in what the model's open provider batches leave of it, and the rest wait for room, as
the live limiter makes calls wait. With nothing queued, one job bigger than the limit still goes
alone (the provider then refuses it, and it falls back to live): it would never fit otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from config.settings import Settings


@dataclass(frozen=True, slots=True)
class GroupKey:
    """What one provider batch has in common: the provider, the endpoint, the model (and the tier whose
    jobs these are, which names the provider)."""

    provider: str
    endpoint: str
    model: str
    tier: str
    kind: str


@dataclass(frozen=True, slots=True)
class WaitingGroup:
    """Deferred jobs of one key not yet in a provider batch: how many, and since when."""

    key: GroupKey
    count: int
    oldest: datetime
    bytes: int = 0
    """The size of the waiting requests' bodies (their lines in the file are a little longer)."""


@dataclass(frozen=True, slots=True)
class FlushRule:
    """When a group is sent, and how big one provider batch may be."""

    flush_size: int = 1000
    flush_age_seconds: float = 60.0
    flush_bytes: int = 64 * 1024 * 1024
    max_lines: int = 50_000
    max_bytes: int = 190 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> FlushRule:
        return cls(
            flush_size=settings.provider_batch_flush_size,
            flush_age_seconds=settings.provider_batch_flush_age_seconds,
            flush_bytes=settings.provider_batch_flush_bytes,
            max_lines=settings.provider_batch_max_lines,
            max_bytes=settings.provider_batch_max_bytes,
        )

    def is_due(self, group: WaitingGroup, now: datetime) -> bool:
        """Whether the group is sent now: full enough (in jobs or in bytes), or waited long enough."""
        if group.count <= 0:
            return False
        return (
            group.count >= self.flush_size
            or group.bytes >= self.flush_bytes
            or (now - group.oldest).total_seconds() >= self.flush_age_seconds
        )

    @staticmethod
    def take_tokens(tokens: list[int], room: int | None, *, nothing_queued: bool) -> int:
        """How many of the jobs, of ``tokens`` estimated tokens each, fit in ``room`` enqueued tokens
        (None: no limit); with nothing queued, at least one."""
        if room is None:
            return len(tokens)
        total = 0
        for index, count in enumerate(tokens):
            total += count
            if total > room:
                return 1 if index == 0 and nothing_queued else index
        return len(tokens)

    def take(self, sizes: list[int]) -> int:
        """How many of the lines, of ``sizes`` bytes each (newline included), one provider batch takes:
        as many as fit in ``max_lines`` and ``max_bytes``, and always at least one."""
        total = 0
        for index, size in enumerate(sizes[: self.max_lines]):
            total += size
            if total > self.max_bytes and index > 0:
                return index
        return min(len(sizes), self.max_lines)
