"""FastAPI dependencies as Annotated aliases; tests swap them through ``dependency_overrides``.

A dependency that does no I/O is ``async def``: FastAPI runs a plain ``def`` one on a worker thread,
and the hop there and back cost more than the rest of a submission (``bench/README.md``). Those that
touch the database (the session, the key lookup) stay plain functions, off the event loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.auth import PrincipalDep
from api.enqueue import Enqueuer
from config.settings import Settings
from domain.db import session_scope


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


async def get_enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


async def get_tenant(principal: PrincipalDep) -> str:
    """The caller's tenant, from its API key (``api.auth``): every query is scoped to it."""
    return principal.tenant_id


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
TenantDep = Annotated[str, Depends(get_tenant)]
