"""API keys for tests: made straight in the database, as `batchery keys create` would make them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from domain.storage.models import DEFAULT_TENANT
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tenancy import api_keys
from domain.tenancy.api_keys import ALL_SCOPES


def create_key(
    database_url: str,
    tenant: str = DEFAULT_TENANT,
    scopes: Iterable[str] = ALL_SCOPES,
    *,
    expires_at: datetime | None = None,
    name: str | None = None,
) -> str:
    """A new key for ``tenant`` (every scope unless told), returned in full."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            issued = api_keys.create_key(
                session, tenant_id=tenant, scopes=scopes, expires_at=expires_at, name=name
            )
            return issued.key
    finally:
        engine.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
