"""The worker's hot-path writes on PostgreSQL and SQLite: the claim in one statement, the success and its
attempt-log row together (one statement on PostgreSQL, autocommit), bulk inserts, and pooled
connections pinged only after being idle."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from domain.jobs import repository
from domain.jobs.attempts import AttemptOutcome, AttemptRecord, list_attempts
from domain.jobs.bulk import fast_path_quota, insert_jobs
from domain.status import JobStatus
from domain.storage.models import Job, utcnow
from domain.storage.pg_pool import autocommit_engine, ping_when_idle
from domain.storage.sessions import connection_scope, make_engine, session_scope
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
    with connection_scope(autocommit_engine(sessions.kw["bind"])) as connection:  # as the worker claims
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

    on_a_connection = autocommit_engine(sessions.kw["bind"])  # as the worker writes a plain completion
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
    engine = autocommit_engine(sessions.kw["bind"])
    with connection_scope(engine) as connection:  # landed, but say its answer was lost on the way
        first = repository.claim(connection, job_id, owner="w1", lease_seconds=60, token=token)
    with connection_scope(engine) as connection:
        again = repository.claim(connection, job_id, owner="w1", lease_seconds=60, token=token)
        other = repository.claim(connection, job_id, owner="w2", lease_seconds=60)

    assert first is not None and again is not None and other is None
    assert (first.token, first.attempt) == (again.token, again.attempt) == (token, 1)
