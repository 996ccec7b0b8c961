"""The worker's two statements per job (the claim, and a plain completion with its attempt log) on
PostgreSQL, run on long-lived autocommit psycopg connections of their own.

They are the very statements ``domain.jobs.repository`` builds with SQLAlchemy, compiled once for
PostgreSQL. Run through a SQLAlchemy ``Connection``, each costs more Python than the database
round trip itself (a connection object, an execution context, a result proxy, the isolation level set
and reset at every checkout), and a worker pays it twice per job. Every other query stays
SQLAlchemy's; only these two skip the layers between the application and the driver:

- each runs on a connection of ``HotConnections``, always in autocommit mode, with the cursor it keeps
  (the statement commits by itself, and is prepared on the server once per connection);
- a lost connection is closed and reported as ``Unavailable``, as
  ``domain.storage.sessions.connection_scope`` does, and an idle one is pinged before use.

The tests run the claim and the completion on both paths (``tests/integration/test_hot_path_writes.py``).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import Engine
from sqlalchemy.sql.elements import ClauseElement

from domain.errors import Unavailable
from domain.jobs import repository
from domain.jobs.attempts import AttemptRecord
from domain.jobs.completion_sql import COMPLETE_AND_LOG, log_params
from domain.jobs.repository import Claim
from domain.status import JobStatus
from domain.storage.models import utcnow
from domain.tokens.estimates import UsageColumns

_NAMED = re.compile(r"%\(([^)]+)\)s")


class CompiledStatement:
    """A SQLAlchemy statement compiled once for psycopg: its SQL, its constant parameters, the columns
    whose ``onupdate`` default must be filled in, and the parameters that hold JSON."""

    def __init__(
        self, statement: ClauseElement, engine: Engine, *, json_params: tuple[str, ...] = ()
    ) -> None:
        compiled: Any = statement.compile(dialect=engine.dialect)
        # positional placeholders: psycopg then passes the values as they are, instead of matching
        # every named placeholder to its value at each execution
        self.names: list[str] = []
        self.sql: str = _NAMED.sub(self._positional, compiled.string)
        self.constants = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not name.startswith("%(") and bind.value is not None and not callable(bind.value)
        }
        update_prefetch = getattr(compiled, "update_prefetch", None) or []
        self.now_columns = tuple(column.key for column in update_prefetch)
        self.json_params = json_params

    def _positional(self, match: re.Match[str]) -> str:
        self.names.append(match.group(1))
        return "%s"

    def parameters(self, values: dict[str, Any]) -> list[Any]:
        """The statement's parameters, in placeholder order."""
        params = {**self.constants, **values}
        if self.now_columns:
            now = utcnow()
            for name in self.now_columns:
                params.setdefault(name, now)
        for name in self.json_params:
            params[name] = Jsonb(params[name])
        return [params[name] for name in self.names]


IDLE_PING_SECONDS = 30.0
APPLICATION_NAME = "batchery-hot-path"


class _Held:
    """One long-lived autocommit connection with its cursor, and when it was last put back."""

    __slots__ = ("connection", "cursor", "returned")

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection
        self.cursor: psycopg.Cursor[Any] = connection.cursor(row_factory=namedtuple_row)
        self.returned = time.monotonic()


class HotConnections:
    """Up to ``size`` autocommit connections, each keeping one cursor, lent one at a time.

    psycopg's and SQLAlchemy's pools both hand out a connection that must be checked and reset at every
    checkout, and a new cursor for each statement; together that is about as much CPU as the statement
    itself (``bench/README.md``). These connections never leave autocommit mode and never hold a
    transaction, so lending one is a pop from a list. Connections are opened on demand; one that has
    been idle ``idle_ping_seconds`` is pinged before use, and one that breaks is closed and dropped,
    the failure reported as ``Unavailable``.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        size: int,
        *,
        wait_seconds: float = 10.0,
        idle_ping_seconds: float = IDLE_PING_SECONDS,
    ) -> None:
        self._connect = connect
        self.size = size
        self.wait_seconds = wait_seconds
        self.idle_ping_seconds = idle_ping_seconds
        self._free = threading.BoundedSemaphore(size)
        self._idle: list[_Held] = []  # last returned last: the warmest connection is lent first
        self._lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine: Engine, size: int) -> HotConnections:
        """Connections to ``engine``'s database with its connect arguments and type adapters."""
        args, params = engine.dialect.create_connect_args(engine.url)
        params.setdefault("connect_timeout", 5)
        params.setdefault("application_name", APPLICATION_NAME)

        def connect() -> psycopg.Connection[Any]:
            return psycopg.Connection.connect(*args, **params, autocommit=True)

        return cls(connect, size)

    @contextmanager
    def cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        """Lend a connection's cursor for one statement."""
        if not self._free.acquire(timeout=self.wait_seconds):
            raise Unavailable(f"no database connection free within {self.wait_seconds:.0f}s")
        held: _Held | None = None
        try:
            held = self._take()
            yield held.cursor
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # the connection broke
            if held is not None:
                held.connection.close()
            raise Unavailable("the database is unavailable") from exc
        except psycopg.Error:
            if held is not None:  # the server refused the statement: the connection is still good
                self._give_back(held)
            raise
        except BaseException:
            if held is not None:  # interrupted mid-statement: its state is unknown
                held.connection.close()
            raise
        else:
            self._give_back(held)
        finally:
            self._free.release()

    def _give_back(self, held: _Held) -> None:
        held.returned = time.monotonic()
        with self._lock:
            self._idle.append(held)

    def _take(self) -> _Held:
        while True:
            with self._lock:
                held = self._idle.pop() if self._idle else None
            if held is None:
                return _Held(self._connect())  # an unreachable server raises OperationalError
            if held.connection.closed:
                continue
            if time.monotonic() - held.returned < self.idle_ping_seconds:
                return held
            try:
                held.cursor.execute("SELECT 1")
                return held
            except (psycopg.OperationalError, psycopg.InterfaceError):
                held.connection.close()  # dead while idle (a server restart): take another

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for held in idle:
            held.connection.close()


class HotPath:
    """``repository.claim`` and ``repository.complete`` (with its attempt log) for one PostgreSQL
    engine, the same statements and results, run as above."""

    def __init__(self, engine: Engine, *, size: int = 4) -> None:
        self.engine = engine
        self.connections = HotConnections.for_engine(engine, size)
        self._claim = CompiledStatement(repository.CLAIM, engine)
        self._complete = CompiledStatement(
            COMPLETE_AND_LOG, engine, json_params=("done_result", "done_usage")
        )

    def claim(
        self, job_id: str, *, owner: str, lease_seconds: float, token: str | None = None
    ) -> Claim | None:
        values = repository.claim_values(job_id, owner=owner, lease_seconds=lease_seconds, token=token)
        row = self._fetch_one(self._claim, values)
        return repository.claim_from_row(values, row) if row is not None else None

    def complete(
        self,
        claim: Claim,
        *,
        result: dict[str, Any],
        usage: dict[str, Any] | None,
        columns: UsageColumns,
        limiter_wait_ms: int = 0,
        attempt: AttemptRecord,
    ) -> JobStatus | None:
        values = repository.complete_values(
            claim, result=result, usage=usage, columns=columns, limiter_wait_ms=limiter_wait_ms
        )
        row = self._fetch_one(self._complete, {**values, **log_params(attempt)})
        return repository.stored_status(row.status if row is not None else None)

    def _fetch_one(self, statement: CompiledStatement, values: dict[str, Any]) -> Any:
        """Run ``statement``, which commits by itself; its first row, or None."""
        with self.connections.cursor() as cursor:
            cursor.execute(statement.sql, statement.parameters(values), prepare=True)
            return cursor.fetchone()

    def close(self) -> None:
        self.connections.close()
