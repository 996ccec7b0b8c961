"""One database session for one CLI command, on the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from config.errors import BatcheryError
from config.settings import get_settings
from domain.errors import ServiceError, Unavailable
from domain.storage.sessions import make_engine, make_session_factory, session_scope


@contextmanager
def command_session(error: type[BatcheryError]) -> Iterator[Session]:
    """A session committed when the block ends; what the database refuses is raised as ``error``."""
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield session
    except Unavailable as exc:
        raise error(f"{exc.message} (is it migrated? run `batchery db upgrade`)") from exc
    except ServiceError as exc:
        raise error(exc.message) from exc
    finally:
        engine.dispose()
