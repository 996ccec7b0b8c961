"""The development API key that ``batchery dev`` prints.

It is kept in ``var/dev-api-key`` (mode 0600) and reused while it still works against the configured
database, so scripts keep working across restarts; otherwise a new one is made for tenant ``default``
with every scope.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from config.settings import Settings
from domain.errors import Unauthenticated
from domain.storage.models import DEFAULT_TENANT
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tenancy import api_keys
from domain.tenancy.api_keys import ALL_SCOPES

DEV_KEY_NAME = "batchery dev"


def ensure_dev_key(settings: Settings, path: Path) -> str:
    """A working key for the development tenant: the saved one if still valid, else a new one."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        sessions = make_session_factory(engine)
        saved = path.read_text().strip() if path.is_file() else ""
        if saved:
            try:
                with session_scope(sessions) as session:
                    api_keys.authenticate(session, saved, now=datetime.now(UTC))
                return saved
            except Unauthenticated:
                pass
        with session_scope(sessions) as session:
            issued = api_keys.create_key(
                session, tenant_id=DEFAULT_TENANT, scopes=ALL_SCOPES, name=DEV_KEY_NAME
            )
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(issued.key + "\n")
    return issued.key
