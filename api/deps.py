"""FastAPI dependencies as Annotated aliases; tests swap them through ``dependency_overrides``.

Every dependency is ``async def``: FastAPI runs a plain ``def`` one on a worker thread, and each hop
there and back costs more than the rest of a submission (``bench/README.md``). None of them does I/O
on the event loop: a session connects on first use, on the route's own thread, and ending it goes to
a worker thread only when it holds a transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import PrincipalDep
from api.enqueue import Enqueuer
from config.settings import Settings
from domain.metrics.job_counters import JobCounters
from domain.storage.sessions import end_session, needs_ending, raise_if_outage


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session, committed when the route returns and rolled back when it raises, outages
    answered as ``Unavailable`` (as ``domain.storage.sessions.session_scope``). A route that commits
    its own work leaves nothing to end: no extra hop."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    except BaseException as exc:
        await _end(session, exc)
        raise
    await _end(session, None)


async def _end(session: Session, error: BaseException | None) -> None:
    if needs_ending(session):
        await run_in_threadpool(end_session, session, error)
        return
    session.close()
    if error is not None:
        raise_if_outage(error)


async def get_enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


async def get_tenant(principal: PrincipalDep) -> str:
    """The caller's tenant, from its API key (``api.auth``): every query is scoped to it."""
    return principal.tenant_id


async def get_key_id(principal: PrincipalDep) -> str | None:
    """The id of the caller's API key (None when authentication is off): a key may have its own budget."""
    return principal.key_id


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
TenantDep = Annotated[str, Depends(get_tenant)]
KeyIdDep = Annotated[str | None, Depends(get_key_id)]


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
