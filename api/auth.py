"""Authentication and scopes for every ``/v1`` route.

A caller sends ``Authorization: Bearer <key>`` (what the ``openai`` SDK sends for ``api_key``). A
missing, malformed, unknown, revoked or expired key answers 401; a key without the route's scope
answers 403; both with the usual ``{"error": {...}}`` body.

Routes declare what they need with ``require_scope``::

    router = APIRouter(prefix="/v1/batches", dependencies=[require_scope("batches:read")])

    @router.post("", dependencies=[require_scope("batches:write")])
    def create_batch(tenant: TenantDep) -> ...: ...

and read the tenant with ``api.deps.TenantDep`` (or the whole principal with ``PrincipalDep``). Both
authenticate; FastAPI runs the lookup once per request however many dependencies ask for it.

``BATCHERY_AUTH_DISABLED=true`` makes every request the ``default`` tenant with every scope. Start-up
then logs a loud warning, and the setting is refused in production.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.threads import run_on_service_threads
from config.settings import Settings
from domain.errors import PermissionDenied, Unauthenticated
from domain.jobs.schemas import ErrorBody
from domain.storage.models import DEFAULT_TENANT
from domain.storage.sessions import session_scope
from domain.tenancy import api_keys
from domain.tenancy.api_keys import ALL_SCOPES, Principal, Scope

log = logging.getLogger(__name__)

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="bk_<id>_<secret>",
    description="A batchery API key (`batchery keys create`), sent as `Authorization: Bearer <key>`.",
)

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, invalid, revoked or expired API key"},
    403: {"model": ErrorBody, "description": "The API key lacks the scope this route needs"},
}
"""Add to a router's or route's ``responses`` so the OpenAPI schema declares the auth errors."""

_UNAUTHENTICATED = Principal(tenant_id=DEFAULT_TENANT, scopes=ALL_SCOPES, key_id=None)


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    """The caller, from its bearer key (or the default tenant when authentication is off). The key is
    looked up on every request, so a revoked key stops working at once; the lookup runs on a thread
    kept for authentication and health (``api.threads``), never on the event loop nor on the threads
    that user work can fill."""
    settings: Settings = request.app.state.settings
    if settings.auth_disabled:
        return _UNAUTHENTICATED
    if credentials is None or not credentials.credentials:
        raise Unauthenticated(
            "You didn't provide an API key. Send it in an Authorization header: "
            "'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    return await run_on_service_threads(
        request, _look_up, request.app.state.sessions, credentials.credentials
    )


def _look_up(sessions: sessionmaker[Session], presented: str) -> Principal:
    with session_scope(sessions) as session:
        return api_keys.authenticate(session, presented, now=datetime.now(UTC))


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_scope(scope: str | Scope) -> Any:
    """A dependency (for ``dependencies=[...]``) that answers 403 unless the key has ``scope``."""
    wanted = Scope(scope).value

    async def check_scope(principal: PrincipalDep) -> Principal:
        if not principal.allows(wanted):
            raise PermissionDenied(
                f"this API key lacks the {wanted!r} scope (it has: {', '.join(sorted(principal.scopes))})",
                param=None,
            )
        return principal

    check_scope.__name__ = f"require_{wanted.replace(':', '_')}"
    return Depends(check_scope)


def warn_if_auth_disabled(settings: Settings) -> None:
    """The loud start-up warning when authentication is off."""
    if settings.auth_disabled:
        banner = "!" * 78
        log.warning(
            "\n%s\n!! AUTHENTICATION IS DISABLED (BATCHERY_AUTH_DISABLED=true): every request is tenant %r\n"
            "!! with every scope. Never expose this API beyond your own machine.\n%s",
            banner,
            DEFAULT_TENANT,
            banner,
        )
