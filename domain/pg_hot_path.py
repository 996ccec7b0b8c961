"""The worker's two statements per job (the claim, and a plain completion with its attempt log) on
PostgreSQL, run straight on the pooled psycopg connection.

They are the very statements ``domain.repository`` builds with SQLAlchemy, compiled once for
PostgreSQL. Run through a SQLAlchemy ``Connection``, each costs more Python than the database
round trip itself (a connection object, an execution context, a result proxy, the isolation level set
and reset at every checkout), and a worker pays it twice per job. Here the pool, its idle ping and
every other query stay SQLAlchemy's; only these two skip the layers between the pool and the driver:

- the connection is checked out of the engine's own pool (``Engine.raw_connection``);
- each statement commits by itself (psycopg's autocommit, set for the statement and restored);
- a lost connection is invalidated in the pool and reported as ``Unavailable``, as
  ``domain.db.connection_scope`` does.

The tests run the claim and the completion on both paths (``tests/integration/test_hot_path_writes.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.elements import ClauseElement

from domain import repository
from domain.attempts import AttemptRecord
from domain.completion_sql import COMPLETE_AND_LOG, log_params
from domain.costing import UsageColumns
from domain.errors import Unavailable
from domain.models import utcnow
from domain.repository import Claim
from domain.status import JobStatus


class CompiledStatement:
    """A SQLAlchemy statement compiled once for psycopg: its SQL, its constant parameters, the columns
    whose ``onupdate`` default must be filled in, and the parameters that hold JSON."""

    def __init__(
        self, statement: ClauseElement, engine: Engine, *, json_params: tuple[str, ...] = ()
    ) -> None:
        compiled: Any = statement.compile(dialect=engine.dialect)
        self.sql: str = compiled.string
        self.constants = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not name.startswith("%(") and bind.value is not None and not callable(bind.value)
        }
        update_prefetch = getattr(compiled, "update_prefetch", None) or []
        self.now_columns = tuple(column.key for column in update_prefetch)
        self.json_params = json_params

    def parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        params = {**self.constants, **values}
        if self.now_columns:
            now = utcnow()
            for name in self.now_columns:
                params.setdefault(name, now)
        for name in self.json_params:
            params[name] = Jsonb(params[name])
        return params


@contextmanager
def _autocommit_cursor(engine: Engine) -> Iterator[psycopg.Cursor[Any]]:
    try:
        raw = engine.raw_connection()  # from the engine's pool, idle ping included
    except (OperationalError, DBAPIError, psycopg.OperationalError) as exc:  # the server cannot be reached
        raise Unavailable("the database is unavailable") from exc
    try:
        connection: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        connection.autocommit = True
        try:
            with connection.cursor(row_factory=namedtuple_row) as cursor:
                yield cursor
        finally:
            if not connection.closed:
                connection.autocommit = False
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # the connection broke
        raw.invalidate(exc)
        raise Unavailable("the database is unavailable") from exc
    finally:
        raw.close()  # back to the pool


def fetch_one(engine: Engine, statement: CompiledStatement, values: dict[str, Any]) -> Any:
    """Run ``statement`` in a transaction of its own; its first row, or None."""
    with _autocommit_cursor(engine) as cursor:
        cursor.execute(statement.sql, statement.parameters(values), prepare=True)
        return cursor.fetchone()


class HotPath:
    """``repository.claim`` and ``repository.complete`` (with its attempt log) for one PostgreSQL
    engine, the same statements and results, run as above."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._claim = CompiledStatement(repository.CLAIM, engine)
        self._complete = CompiledStatement(
            COMPLETE_AND_LOG, engine, json_params=("done_result", "done_usage")
        )

    def claim(
        self, job_id: str, *, owner: str, lease_seconds: float, token: str | None = None
    ) -> Claim | None:
        values = repository.claim_values(job_id, owner=owner, lease_seconds=lease_seconds, token=token)
        row = fetch_one(self.engine, self._claim, values)
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
        row = fetch_one(self.engine, self._complete, {**values, **log_params(attempt)})
        return repository.stored_status(row.status if row is not None else None)
