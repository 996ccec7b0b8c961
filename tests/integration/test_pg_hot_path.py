"""The worker's claim and completion on PostgreSQL straight through the pooled driver connection
(``domain.storage.pg_hot_path``): the same rows and answers as ``domain.jobs.repository``'s, fenced the
same way,
and a connection lost under it reported as Unavailable and replaced in the pool."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from domain.errors import Unavailable
from domain.jobs import repository
from domain.jobs.attempts import AttemptOutcome, AttemptRecord, list_attempts
from domain.status import JobStatus
from domain.storage.models import Job, utcnow
from domain.storage.pg_hot_path import APPLICATION_NAME, HotConnections, HotPath
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tokens.estimates import UsageColumns
from tests.factories import new_job

pytestmark = pytest.mark.integration

COLUMNS = UsageColumns(prompt_tokens=5, completion_tokens=7, total_tokens=12, cached_tokens=1)


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url, pool_size=1, pre_ping=False)  # no ping: a dead connection shows
    yield engine
    engine.dispose()


_OPEN: list[HotPath] = []


@pytest.fixture(autouse=True)
def _close_hot_paths() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _hot(engine: Engine) -> HotPath:
    hot = HotPath(engine, size=1)
    _OPEN.append(hot)
    return hot


def _stored(sessions: sessionmaker[Session], **overrides: object) -> str:
    with session_scope(sessions) as session:
        job, _ = repository.create_job(session, new_job(**overrides))
        return job.id


def test_the_claim_answers_as_the_repository_does(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    hot = _hot(engine)
    plain, hooked = _stored(sessions), _stored(sessions, webhook_url="https://example.com/hook")

    first = hot.claim(plain, owner="w1", lease_seconds=60)
    second = hot.claim(hooked, owner="w1", lease_seconds=60)

    assert first is not None and second is not None
    assert (first.attempt, first.kind, first.tier, first.estimated_tokens) == (1, "chat", "standard", 40)
    assert first.request["messages"] and first.has_webhook is False and second.has_webhook is True
    assert hot.claim(plain, owner="w2", lease_seconds=60) is None  # leased by w1
    with session_scope(sessions) as session:
        row = session.get(Job, plain)
        assert row is not None and row.status == "running" and row.lease_owner == first.token
        assert row.started_at is not None and row.updated_at >= row.created_at


def test_the_completion_is_fenced_stores_json_and_logs_the_attempt(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    hot = _hot(engine)
    job_id, cancelled_id = _stored(sessions), _stored(sessions)
    claim = hot.claim(job_id, owner="w1", lease_seconds=60)
    other = hot.claim(cancelled_id, owner="w1", lease_seconds=60)
    assert claim is not None and other is not None
    with session_scope(sessions) as session:
        session.execute(
            text("UPDATE jobs SET cancel_requested_at = now() WHERE id = :id"), {"id": cancelled_id}
        )
    attempt = AttemptRecord(number=1, outcome=AttemptOutcome.succeeded, status_code=200, started_at=utcnow())
    result = {"id": "chatcmpl-1", "choices": [{"message": {"content": "é"}}]}

    lost = hot.complete(
        replace(claim, token="w0:stale"), result={}, usage=None, columns=COLUMNS, attempt=attempt
    )
    stored = hot.complete(claim, result=result, usage={"total_tokens": 12}, columns=COLUMNS, attempt=attempt)
    cancelled = hot.complete(other, result=result, usage=None, columns=COLUMNS, attempt=attempt)

    assert (lost, stored, cancelled) == (None, JobStatus.succeeded, JobStatus.cancelled)
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.result == result and job.usage == {"total_tokens": 12}
        assert (job.total_tokens, job.cached_tokens, job.lease_owner) == (12, 1, None)
        assert [(a.number, a.outcome) for a in list_attempts(session, job_id)] == [(1, "succeeded")]
        kept = session.get(Job, cancelled_id)
        assert kept is not None and kept.status == "cancelled" and kept.usage is None


def _terminate_hot_connections(postgres_url: str) -> int:
    """End every hot-path connection to the test's database; how many there were."""
    killer = make_engine(postgres_url, pool_size=1)
    try:
        with killer.connect() as connection:
            ended = connection.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": APPLICATION_NAME},
            )
            return int(ended.scalar_one())
    finally:
        killer.dispose()


def test_a_connection_lost_under_it_is_unavailable_then_replaced(engine: Engine, postgres_url: str) -> None:
    sessions = make_session_factory(engine)
    hot = _hot(engine)
    warm, first, second = _stored(sessions), _stored(sessions), _stored(sessions)
    assert hot.claim(warm, owner="w1", lease_seconds=60) is not None  # opens the one connection
    assert _terminate_hot_connections(postgres_url) >= 1

    with pytest.raises(Unavailable):
        hot.claim(first, owner="w1", lease_seconds=60)  # used again at once: no ping, the statement fails
    claim = hot.claim(second, owner="w1", lease_seconds=60)  # on a new connection

    assert claim is not None and claim.job_id == second


def test_a_connection_that_died_while_idle_is_pinged_and_replaced(engine: Engine, postgres_url: str) -> None:
    sessions = make_session_factory(engine)
    hot = _hot(engine)
    hot.connections.idle_ping_seconds = 0.0  # every connection counts as idle
    warm, job_id = _stored(sessions), _stored(sessions)
    assert hot.claim(warm, owner="w1", lease_seconds=60) is not None
    assert _terminate_hot_connections(postgres_url) >= 1

    claim = hot.claim(job_id, owner="w1", lease_seconds=60)  # the ping fails, a new connection serves

    assert claim is not None and claim.job_id == job_id


def _backend_pid(connections: HotConnections) -> int:
    with connections.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid() AS pid")
        row = cursor.fetchone()
        assert row is not None
        return int(row.pid)


def test_connections_are_lent_one_at_a_time_and_kept_after_a_refused_statement(engine: Engine) -> None:
    connections = HotConnections.for_engine(engine, 1)
    connections.wait_seconds = 0.05
    pid = _backend_pid(connections)

    with connections.cursor():
        with pytest.raises(Unavailable, match="no database connection free"):
            with connections.cursor():
                pass
    with pytest.raises(psycopg.errors.UndefinedTable):
        with connections.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    assert _backend_pid(connections) == pid  # the same connection, still in autocommit mode
    with connections.cursor() as cursor:
        assert cursor.connection.autocommit is True
    connections.close()


def test_a_server_that_cannot_be_reached_is_unavailable(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    from testbed.processes import free_port

    unreachable = make_url(postgres_url).set(host="127.0.0.1", port=free_port())  # nothing listens there
    engine = make_engine(unreachable.render_as_string(hide_password=False), pool_size=1)
    try:
        with pytest.raises(Unavailable):
            _hot(engine).claim("job_none", owner="w1", lease_seconds=60)
    finally:
        engine.dispose()


def test_a_claim_tried_again_with_its_token_counts_one_attempt(engine: Engine) -> None:
    sessions = make_session_factory(engine)
    hot = _hot(engine)
    job_id = _stored(sessions)
    token = repository.new_lease_token("w1")

    first = hot.claim(job_id, owner="w1", lease_seconds=60, token=token)
    again = hot.claim(job_id, owner="w1", lease_seconds=60, token=token)

    assert first is not None and again is not None
    assert (again.token, again.attempt) == (token, 1) and hot.claim(
        job_id, owner="w2", lease_seconds=60
    ) is None
