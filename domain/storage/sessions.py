"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from domain.errors import Unavailable

Executor = Session | Connection
"""What runs a statement: a session, or a bare connection on the worker's hot path."""


IDLE_PING_SECONDS = 5.0
"""A pooled connection idle this long is pinged before use; a busy one, never (a ping per checkout is a
round trip per request). A connection that broke while in use fails that one statement, which the
caller maps to ``Unavailable`` and the pool replaces."""


def make_engine(
    database_url: str, *, pool_size: int = 10, pre_ping: bool = True, idle_ping: bool = False, **kwargs: Any
) -> Engine:
    """An engine for SQLite (WAL, foreign keys) or PostgreSQL (psycopg 3). A PostgreSQL connection is
    pinged before every use (``pre_ping``), or, with ``idle_ping``, only after ``IDLE_PING_SECONDS``
    idle: the cheaper choice for a busy process."""
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping and not idle_ping,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
        **kwargs,
    )
    if idle_ping:
        ping_when_idle(engine, IDLE_PING_SECONDS)
    return engine


_CHECKED_IN = "batchery_checked_in"


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


def autocommit(engine: Engine) -> Engine:
    """A view of ``engine`` (same pool) whose connections commit each statement by itself: a transaction
    of one statement then needs no BEGIN and COMMIT."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success, rolls back on error, and maps outages to Unavailable."""
    session = factory()
    try:
        yield session
    except BaseException as exc:
        end_session(session, exc)
        raise
    end_session(session, None)


def end_session(session: Session, error: BaseException | None) -> None:
    """End ``session``: commit it, or roll it back when its work raised ``error``; then close it.

    A database outage, raised by the work or by the commit, becomes ``Unavailable``; any other error of
    the work is left for the caller to re-raise. A session that ``needs_ending`` says no about holds no
    connection, so ending it does no I/O."""
    try:
        if error is not None:
            session.rollback()
            raise_if_outage(error)
            return
        try:
            session.commit()
        except BaseException as exc:
            session.rollback()
            raise_if_outage(exc)
            raise
    finally:
        session.close()


def raise_if_outage(error: BaseException) -> None:
    """Raise ``Unavailable`` from ``error`` when it means the database cannot be reached."""
    if isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        raise Unavailable("the database is unavailable") from error


def needs_ending(session: Session) -> bool:
    """Whether ending ``session`` talks to the database: it has a transaction open, or pending changes."""
    return session.in_transaction() or bool(session.new or session.dirty or session.deleted)


@contextmanager
def connection_scope(engine: Engine) -> Iterator[Connection]:
    """A bare connection from ``engine``'s pool, for statements that need no session (the worker's hot
    path runs on an ``autocommit`` engine). Outages map to
    Unavailable, as in ``session_scope``."""
    try:
        with engine.connect() as connection:
            yield connection
            connection.commit()  # a no-op in autocommit mode
    except (OperationalError, DBAPIError) as exc:
        raise_if_outage(exc)
        raise
