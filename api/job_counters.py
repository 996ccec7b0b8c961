"""The API's job counters (``domain.metrics.job_counters``) as a dependency, made once per app."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from domain.metrics.job_counters import JobCounters


async def get_job_counters(request: Request) -> JobCounters:
    """The app's counters, made on first use; buffered, flushed by ``/metrics`` and at shutdown."""
    state = request.app.state
    counters: JobCounters | None = getattr(state, "job_counters", None)
    if counters is None:
        counters = JobCounters(state.redis, state.settings, buffered=True)
        state.job_counters = counters
    return counters


def flush_job_counters(state: Any) -> None:
    """Send what this process counted and has not written yet (``state`` is the app's state)."""
    counters: JobCounters | None = getattr(state, "job_counters", None)
    if counters is not None:
        counters.flush()


JobCountersDep = Annotated[JobCounters, Depends(get_job_counters)]
