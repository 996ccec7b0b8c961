"""Fixtures shared by the integration tests that run the same assertions on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from domain.storage.sessions import make_engine, make_session_factory


@pytest.fixture(params=["sqlite", "postgres"])
def sessions(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    """A session factory on SQLite, then on PostgreSQL: each test using it runs once on each."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()
