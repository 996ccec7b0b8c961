"""What batchery's SQL needs to know about the database under it, in one small object.

batchery runs on PostgreSQL and on SQLite. Where their SQL differs, a module asks ``dialect_of`` for
the database's ``Dialect`` and uses what it offers, instead of testing the dialect's name itself:

- ``lock_skipping``: PostgreSQL locks the rows a query reads with ``FOR UPDATE SKIP LOCKED``, so
  several dispatchers or sweeps take disjoint rows; SQLite has one writer, so the query is left as is;
- ``insert``: an INSERT that supports ``ON CONFLICT DO NOTHING`` on either;
- ``writable_ctes``: PostgreSQL runs an UPDATE … RETURNING feeding an INSERT as one statement;
- ``json_row_inserts``: PostgreSQL expands many rows from one JSON parameter;
- ``direct_statements``: the worker's claim and completion may run on the driver itself
  (``domain.storage.direct``: psycopg; SQLite's gain is not measured, so it keeps SQLAlchemy's path);
- ``utc_day``: the UTC calendar day of a timestamp column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from typing import cast as cast_type

from sqlalchemy import Connection, Date, Engine, Table, cast, func, literal_column
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

_Query = TypeVar("_Query")


@dataclass(frozen=True, slots=True)
class Dialect:
    """The differences between the databases batchery supports."""

    name: str
    row_locks: bool
    writable_ctes: bool
    json_row_inserts: bool
    direct_statements: bool

    def lock_skipping(self, query: _Query) -> _Query:
        """``query`` (a SELECT) taking row locks that other transactions skip, where the database has them."""
        if not self.row_locks:
            return query
        return cast_type(_Query, cast_type(Any, query).with_for_update(skip_locked=True))

    def insert(self, table: Table) -> Any:
        """An INSERT into ``table`` that offers ``on_conflict_do_nothing``."""
        return (pg_insert if self.name == "postgresql" else sqlite_insert)(table)

    def utc_day(self, column: Any) -> Any:
        """The UTC day of a timestamp column (SQLite keeps UTC timestamps as ISO text)."""
        if self.name == "postgresql":
            return cast(func.timezone(literal_column("'UTC'"), column), Date)
        return func.date(column)


POSTGRESQL = Dialect(
    "postgresql", row_locks=True, writable_ctes=True, json_row_inserts=True, direct_statements=True
)
SQLITE = Dialect(
    "sqlite", row_locks=False, writable_ctes=False, json_row_inserts=False, direct_statements=False
)
_BY_NAME = {dialect.name: dialect for dialect in (POSTGRESQL, SQLITE)}


def dialect_of(executor: Session | Connection | Engine) -> Dialect:
    """The ``Dialect`` of the database a session, a connection or an engine talks to."""
    bind = executor if isinstance(executor, Connection | Engine) else executor.get_bind()
    return _BY_NAME[bind.dialect.name]
