"""Cheaper database round trips for the worker's hot path.

- ``ping_when_idle``: test a pooled connection before use only when it sat idle for a while. The
  default pre-ping costs a round trip at every checkout, two per job; a connection in steady use does
  not need it, and one that rested through a database restart is still caught. A connection that
  breaks while in use raises as usual, and the worker's writes ride that out (``workers.db_retry``).
- ``autocommit_engine``: run a transaction of one statement without BEGIN and COMMIT (two round trips
  fewer), on bare connections with none of a session's bookkeeping: the claim and a plain completion
  run on it, once per job each.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

_CHECKED_IN = "batchery_checked_in"

IDLE_PING_SECONDS = 5.0
"""A pooled connection idle this long is pinged before use; a busy one, never (a ping per checkout is a
round trip per request). A connection that broke while in use fails that one statement, which the
caller maps to ``Unavailable`` and the pool replaces."""


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a connection at checkout when it was idle ``idle_seconds`` or more; a dead one is replaced
    (the pool retries the checkout with a new connection)."""

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any driver error: the connection is unusable
            raise DisconnectionError("a pooled connection did not answer its ping") from exc

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def autocommit_engine(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) whose connections commit each statement by itself."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
