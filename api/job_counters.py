"""The API's job counters (``domain.job_counters``) as a dependency, made once per app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from domain.job_counters import JobCounters


async def get_job_counters(request: Request) -> JobCounters:
    """The app's counters, made on first use."""
    state = request.app.state
    counters: JobCounters | None = getattr(state, "job_counters", None)
    if counters is None:
        counters = JobCounters(state.redis, state.settings)
        state.job_counters = counters
    return counters


JobCountersDep = Annotated[JobCounters, Depends(get_job_counters)]
