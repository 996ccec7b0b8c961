"""How a job runs: a live call, or a line of a batch on the provider's own Batch API (pure).

A caller asks for an ``execution`` mode, per job (``POST /v1/jobs``) or per batch (``POST /v1/batches``,
in ``extra_body``):

- ``live`` (the default): a worker calls the provider now;
- ``provider_batch``: the job waits in a group and goes to the provider's Batch API, at its batch price
  (half price on OpenAI), completing within its ``completion_window``;
- ``auto``: ``provider_batch`` when the tier's provider serves the job's endpoint through its Batch API
  and the window leaves a provider batch its 24 hours, ``live`` otherwise.

The mode is resolved once, when the job is stored, into its ``execution_path``. A deferred job is stored
as *held by the provider-batch path*: ``running`` with the lease ``DEFERRED_OWNER`` until its deadline.
The dispatcher never sends it (it is not in the backlog), and if nothing ever settles it, its lease
expires at the deadline and the dispatcher's expiry sweep hands it to a live worker: nothing is lost.
A live claim marks the job ``live`` (``domain.jobs.statements.CLAIM``), so a job that fell back is
priced live.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain.errors import InvalidRequest
from domain.status import JobKind, JobStatus

PROVIDER_BATCH_WINDOW_SECONDS = 24 * 3600
"""How long a provider batch may take (OpenAI's only completion window)."""
DEFERRED_OWNER = "provider_batch:waiting"
"""The lease holder of a deferred job; a provider batch that takes the job names itself instead."""
MAX_WINDOW_SECONDS = 30 * 24 * 3600
_WINDOW = re.compile(r"^([1-9][0-9]{0,3})([hd])$")


class ExecutionMode(StrEnum):
    """What the caller asked for."""

    live = "live"
    provider_batch = "provider_batch"
    auto = "auto"


class ExecutionPath(StrEnum):
    """What runs the job."""

    live = "live"
    provider_batch = "provider_batch"


def window_seconds(text: str) -> int:
    """Seconds of a completion window such as ``24h`` or ``7d``; raises ValueError otherwise."""
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError("completion_window must be hours or days, such as '24h' or '7d'")
    seconds = int(match.group(1)) * (3600 if match.group(2) == "h" else 86400)
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError("completion_window is at most 30 days")
    return seconds


def batch_endpoint(kind: str) -> str:
    """The Batch API ``url`` of a job kind (``/v1/chat/completions`` for chat and vision)."""
    return "/v1" + JobKind(kind).upstream_path


def choose_path(mode: ExecutionMode, *, window: int | None, provider_serves: bool) -> ExecutionPath:
    """The path a job takes. ``window`` is its completion window in seconds (None: none given, which is
    24 hours for the batch modes); ``provider_serves`` says the tier's provider takes its endpoint
    through its Batch API. Asking for ``provider_batch`` where it cannot run is a 422."""
    if mode is ExecutionMode.live:
        return ExecutionPath.live
    fits = (window if window is not None else PROVIDER_BATCH_WINDOW_SECONDS) >= PROVIDER_BATCH_WINDOW_SECONDS
    if mode is ExecutionMode.auto:
        return ExecutionPath.provider_batch if provider_serves and fits else ExecutionPath.live
    if not provider_serves:
        raise InvalidRequest(
            "execution 'provider_batch': the tier's provider has no Batch API for this endpoint "
            "(use 'auto' to run such jobs live)",
            param="execution",
            code="provider_batch_unsupported",
        )
    if not fits:
        raise InvalidRequest(
            "execution 'provider_batch' needs a completion_window of at least 24h",
            param="completion_window",
            code="completion_window_too_short",
        )
    return ExecutionPath.provider_batch


def deadline_for(now: datetime, path: ExecutionPath, window: int | None) -> datetime | None:
    """When the job must be done: its window from now (24 hours for a deferred job given none)."""
    if window is None and path is ExecutionPath.provider_batch:
        window = PROVIDER_BATCH_WINDOW_SECONDS
    return now + timedelta(seconds=window) if window is not None else None


def path_columns(path: ExecutionPath, deadline: datetime | None) -> dict[str, Any]:
    """The job columns that put a new job on ``path``; they override a queued job's."""
    if path is ExecutionPath.live:
        return {"execution_path": path.value, "deadline_at": deadline}
    assert deadline is not None, "a deferred job always has a deadline"
    return {
        "execution_path": path.value,
        "deadline_at": deadline,
        "status": JobStatus.running.value,
        "lease_owner": DEFERRED_OWNER,
        "lease_expires_at": deadline,
        "dispatched_at": None,
    }
