"""The worker's writes on PostgreSQL and SQLite: the claim in one statement, the success and its
attempt-log row together (one statement on PostgreSQL, autocommit), the same two statements run on the
driver (``domain.storage.direct``) on PostgreSQL, bulk inserts, and pooled connections pinged only
after being idle."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from domain.errors import Unavailable
from domain.jobs import repository, statements
from domain.jobs.attempts import AttemptOutcome, AttemptRecord, list_attempts
from domain.jobs.bulk import fast_path_quota, insert_jobs
from domain.status import JobStatus
from domain.storage.direct import DirectStatement
from domain.storage.models import Job, utcnow
from domain.storage.sessions import autocommit, connection_scope, make_engine, ping_when_idle, session_scope
from domain.tokens.estimates import UsageColumns
from tests.factories import new_job

pytestmark = pytest.mark.integration

COLUMNS = UsageColumns(
    prompt_tokens=5, completion_tokens=7, total_tokens=12, cached_tokens=1, reasoning_tokens=0, images=0
)


def _stored(sessions: sessionmaker[Session], **overrides: Any) -> str:
    with session_scope(sessions) as session:
        job, _ = repository.create_job(session, new_job(**overrides))
        return job.id


def _claim(sessions: sessionmaker[Session], job_id: str) -> repository.Claim:
    with connection_scope(autocommit(sessions.kw["bind"])) as connection:  # as the worker claims
        claim = repository.claim(connection, job_id, owner="w1", lease_seconds=60)
    assert claim is not None
    return claim


def _attempt(number: int = 1) -> AttemptRecord:
    return AttemptRecord(number=number, outcome=AttemptOutcome.succeeded, status_code=200)


def test_the_claim_returns_what_the_run_needs(sessions: sessionmaker[Session]) -> None:
    plain = _stored(sessions)
    hooked = _stored(sessions, webhook_url="https://example.com/hook")

    first = _claim(sessions, plain)
    second = _claim(sessions, hooked)

    assert (first.attempt, first.kind, first.tier, first.estimated_tokens) == (1, "chat", "standard", 40)
    assert first.request["messages"] and first.has_webhook is False and first.batch_id is None
    assert second.has_webhook is True
    with session_scope(sessions) as session:
        assert repository.claim(session, plain, owner="w2", lease_seconds=60) is None  # leased
        row = session.get(Job, plain)
        assert row is not None and row.status == "running" and row.lease_owner == first.token


def test_a_success_and_its_attempt_are_stored_together_and_only_by_the_lease_holder(
    sessions: sessionmaker[Session],
) -> None:
    job_id = _stored(sessions)
    claim = _claim(sessions, job_id)
    stale = replace(claim, token="w0:expired")  # a worker whose lease was taken over

    on_a_connection = autocommit(sessions.kw["bind"])  # as the worker writes a plain completion
    with connection_scope(on_a_connection) as connection:
        lost = repository.complete(
            connection, stale, result={"id": "x"}, usage=None, columns=COLUMNS, attempt=_attempt()
        )
    with connection_scope(on_a_connection) as connection:
        stored = repository.complete(
            connection,
            claim,
            result={"id": "r"},
            usage={"total_tokens": 12},
            columns=COLUMNS,
            attempt=_attempt(),
        )

    assert (lost, stored) == (None, JobStatus.succeeded)
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and job.result == {"id": "r"}
        assert job.total_tokens == 12 and job.lease_owner is None and job.finished_at is not None
        rows = list_attempts(session, job_id)
        assert [(row.number, row.outcome, row.status_code) for row in rows] == [(1, "succeeded", 200)]


def test_a_cancel_requested_during_the_call_wins_and_the_attempt_is_still_logged(
    sessions: sessionmaker[Session],
) -> None:
    job_id = _stored(sessions)
    claim = _claim(sessions, job_id)
    with session_scope(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested_at=utcnow()))

    with session_scope(sessions) as session:
        stored = repository.complete(
            session, claim, result={"id": "r"}, usage=None, columns=COLUMNS, attempt=_attempt()
        )

    assert stored is JobStatus.cancelled

    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "cancelled" and job.result == {"id": "r"}
        assert [row.outcome for row in list_attempts(session, job_id)] == ["succeeded"]


def test_bulk_inserts_store_every_column_and_mark_the_fast_path(sessions: sessionmaker[Session]) -> None:
    jobs = [
        new_job(metadata={"row": str(index)}, priority=index, webhook_url=None if index else "https://e.x/h")
        for index in range(5)
    ]
    send_now = fast_path_quota(jobs, {"standard": 2})
    now = utcnow()

    with session_scope(sessions) as session:
        stored = insert_jobs(session, jobs, send_now=send_now, now=now)

    assert send_now == [True, True, False, False, False]
    with session_scope(sessions) as session:
        rows = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_([s.id for s in stored])))}
        for index, item in enumerate(stored):
            row = rows[item.id]
            assert (row.status, row.priority, row.meta) == ("queued", index, {"row": str(index)})
            assert row.request == jobs[index].request and row.estimated_tokens == 40
            assert (row.dispatched_at is not None) == send_now[index]
            assert row.webhook_url == jobs[index].webhook_url and row.attempts == 0
            assert abs(row.created_at - now) < timedelta(seconds=1)


def test_an_idle_connection_that_died_is_replaced_before_use(postgres_url: str) -> None:
    engine: Engine = make_engine(postgres_url, pool_size=1, pre_ping=False)
    ping_when_idle(engine, idle_seconds=0.0)
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = make_engine(postgres_url, pool_size=1)
        with killer.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.dispose()

        with engine.connect() as connection:  # the pooled connection is dead: the ping replaces it
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()


def test_a_claim_tried_again_with_its_token_takes_its_own_lease_without_a_new_attempt(
    sessions: sessionmaker[Session],
) -> None:
    job_id = _stored(sessions)
    token = repository.new_lease_token("w1")
    engine = autocommit(sessions.kw["bind"])
    with connection_scope(engine) as connection:  # landed, but say its answer was lost on the way
        first = repository.claim(connection, job_id, owner="w1", lease_seconds=60, token=token)
    with connection_scope(engine) as connection:
        again = repository.claim(connection, job_id, owner="w1", lease_seconds=60, token=token)
        other = repository.claim(connection, job_id, owner="w2", lease_seconds=60)

    assert first is not None and again is not None and other is None
    assert (first.token, first.attempt) == (again.token, again.attempt) == (token, 1)


def test_the_direct_statements_claim_and_complete_as_sqlalchemy_does(postgres_url: str) -> None:
    engine = make_engine(postgres_url, pool_size=2, idle_ping=True)
    sessions = sessionmaker(engine, expire_on_commit=False)
    claim_direct = DirectStatement(statements.CLAIM, engine)
    complete_direct = DirectStatement(statements.COMPLETE_AND_LOG, engine)
    try:
        job_id = _stored(sessions)
        values = repository.claim_values(job_id, owner="w1", lease_seconds=60)
        claim = repository.claim_from_row(values, claim_direct.fetch_one(values))
        assert (claim.attempt, claim.kind, claim.has_webhook) == (1, "chat", False)
        assert claim_direct.fetch_one(repository.claim_values(job_id, owner="w2", lease_seconds=60)) is None

        def complete(claim_: repository.Claim) -> Any:
            params = repository.complete_values(
                claim_, result={"id": "r"}, usage={"total_tokens": 12}, columns=COLUMNS, limiter_wait_ms=3
            )
            return complete_direct.fetch_one({**params, **repository.log_values(_attempt())})

        assert complete(replace(claim, token="w0:expired")) is None  # fenced
        assert complete(claim).status == "succeeded"
        with session_scope(sessions) as session:
            job = session.get(Job, job_id)
            assert job is not None and job.status == "succeeded" and job.result == {"id": "r"}
            assert (job.total_tokens, job.limiter_wait_ms, job.lease_owner) == (12, 3, None)
            assert job.updated_at == job.finished_at
            assert [(r.number, r.outcome) for r in list_attempts(session, job_id)] == [(1, "succeeded")]
        # the pool is the engine's own: its connections go back in autocommit off
        with engine.connect() as connection:
            assert connection.execute(text("SHOW transaction_isolation")).scalar_one() == "read committed"
            assert connection.in_transaction()
    finally:
        engine.dispose()


def test_a_direct_statement_on_a_connection_that_died_reports_unavailable_then_recovers(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url, pool_size=1, pre_ping=False)
    sessions = sessionmaker(engine, expire_on_commit=False)
    claim_direct = DirectStatement(statements.CLAIM, engine)
    try:
        first, second = _stored(sessions), _stored(sessions)
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        killer = make_engine(postgres_url, pool_size=1)
        with killer.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.dispose()
        with pytest.raises(Unavailable):  # no ping: the statement meets the dead connection
            claim_direct.fetch_one(repository.claim_values(first, owner="w1", lease_seconds=60))
        row = claim_direct.fetch_one(repository.claim_values(second, owner="w1", lease_seconds=60))
        assert row is not None and row.attempts == 1  # on a new connection
    finally:
        engine.dispose()


def test_a_direct_statement_that_cannot_connect_reports_unavailable() -> None:
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none", pool_size=1)
    try:
        with pytest.raises(Unavailable):
            DirectStatement(statements.CLAIM, engine).fetch_one(
                repository.claim_values("job_x", owner="w1", lease_seconds=60)
            )
    finally:
        engine.dispose()
