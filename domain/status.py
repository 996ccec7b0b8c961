"""Job status and the transitions the service allows (pure).

::

    queued ──▶ running ──▶ succeeded
      │  ▲        │  └───▶ failed
      │  └────────┘ (retry, or a lease that expired)
      └──▶ cancelled ◀── running (cancel requested; ends when the current call returns)

``succeeded``, ``failed`` and ``cancelled`` are terminal: nothing leaves them.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life."""

    queued = "queued"
    """Accepted and durable; waiting for a worker."""
    running = "running"
    """A worker holds its lease and is calling the upstream."""
    succeeded = "succeeded"
    """The upstream answered 2xx; the result is stored."""
    failed = "failed"
    """The upstream refused it, or every attempt failed; the error is stored."""
    cancelled = "cancelled"
    """Cancelled by the caller before it could finish."""


FINISHED_JOB_STATUSES: tuple[str, ...] = (
    JobStatus.succeeded.value,
    JobStatus.failed.value,
    JobStatus.cancelled.value,
)
"""The terminal statuses, as stored: nothing leaves them."""


class JobKind(StrEnum):
    """What a job asks the upstream for; decides the upstream path."""

    chat = "chat"
    vision = "vision"
    embedding = "embedding"
    image = "image"
    response = "response"

    @property
    def upstream_path(self) -> str:
        return UPSTREAM_PATHS[self]


UPSTREAM_PATHS: dict[JobKind, str] = {
    JobKind.chat: "/chat/completions",
    JobKind.vision: "/chat/completions",
    JobKind.embedding: "/embeddings",
    JobKind.image: "/images/generations",
    JobKind.response: "/responses",
}
