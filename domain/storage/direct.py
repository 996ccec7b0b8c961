"""A statement run straight on the driver: the worker's claim and completion on PostgreSQL.

The worker runs two statements for every job: the claim and, for a job without a webhook, the
completion with its attempt-log row. Each is one statement that commits by itself. Through a
SQLAlchemy ``Connection`` each costs about three times the instructions of the driver call itself (an
execution context, a result, the isolation level set and reset): ``bench/callgrind_persistence.py``
counts 1.3 M instructions per job more, a third of a runner's whole job (``bench/README.md``). So
these two, and only these, skip those layers; but the statement stays SQLAlchemy's:

- ``DirectStatement`` is a Core statement compiled once by SQLAlchemy for the engine's dialect. Its
  parameters are what ``construct_params`` gives (the constants the statement holds included), passed
  through each type's bind processor: nothing is rewritten, and the SQL has no other source;
- it runs on a DBAPI connection of the engine's own pool (``Engine.raw_connection``), so the process
  keeps one pool, pinged as the engine pings it, in autocommit mode for the one statement;
- a lost connection is invalidated and reported as ``Unavailable``, as ``connection_scope`` does.

A statement whose columns have an ``onupdate`` default must set them itself: nothing here computes
defaults (``DirectStatement`` refuses such a statement).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ClauseElement

from domain.errors import Unavailable
from domain.storage.sessions import raise_if_outage


class DirectStatement:
    """A Core statement compiled once for ``engine``, run on its pool's DBAPI connections."""

    def __init__(self, statement: ClauseElement, engine: Engine) -> None:
        dialect = engine.dialect
        compiled: Any = statement.compile(dialect=dialect)
        if compiled.prefetch:  # a default SQLAlchemy would compute in Python before each run
            raise ValueError("a direct statement must set every column with an update default itself")
        self.engine = engine
        self.sql: str = compiled.string
        self._compiled = compiled
        processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        self._processors = processors

    def parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """The statement's parameters for ``values``, as the driver takes them."""
        params: dict[str, Any] = self._compiled.construct_params(values)
        for name, processor in self._processors.items():
            if name in params:
                params[name] = processor(params[name])
        return params

    def fetch_one(self, values: dict[str, Any]) -> Any:
        """Run the statement in autocommit mode; its first row (a named tuple), or None."""
        params = self.parameters(values)
        try:
            raw = self.engine.raw_connection()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # no new connection could be made
            raise Unavailable("the database is unavailable") from exc
        except DBAPIError as exc:  # the same, as SQLAlchemy reports it
            raise_if_outage(exc)
            raise
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            try:
                with connection.cursor(row_factory=namedtuple_row) as cursor:
                    cursor.execute(self.sql, params, prepare=True)
                    return cursor.fetchone()
            finally:
                if not connection.closed:
                    connection.autocommit = False
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raw.invalidate(exc)
            raise Unavailable("the database is unavailable") from exc
        finally:
            raw.close()  # back to the pool (an invalidated one is replaced)
