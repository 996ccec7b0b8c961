"""The repository against real SQLite and real PostgreSQL: claims, fencing, cancel, pagination."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from domain.errors import Conflict, IdempotencyKeyReused, NotFound
from domain.jobs import repository
from domain.status import JobStatus
from domain.storage.models import Job, utcnow
from domain.storage.sessions import session_scope
from domain.tokens.estimates import UsageColumns
from tests.factories import new_job

pytestmark = pytest.mark.integration


def _create(sessions: sessionmaker[Session], **overrides: object) -> str:
    with session_scope(sessions) as session:
        job, created = repository.create_job(session, new_job(**overrides))  # type: ignore[arg-type]
        assert created
        return job.id


def test_create_and_read_back(sessions: sessionmaker[Session]) -> None:
    job_id = _create(sessions, metadata={"k": "v"})
    with session_scope(sessions) as session:
        job = repository.get_job(session, job_id, tenant_id="default")
        assert job.status == JobStatus.queued.value
        assert job.request["messages"][0]["content"] == "Say hello"
        assert job.meta == {"k": "v"}
        assert job.id.startswith("job_")
        with pytest.raises(NotFound):
            repository.get_job(session, job_id, tenant_id="someone-else")


def test_claim_is_exclusive_and_completion_is_fenced(sessions: sessionmaker[Session]) -> None:
    job_id = _create(sessions)
    with session_scope(sessions) as session:
        first = repository.claim(session, job_id, owner="w1", lease_seconds=60)
    assert first is not None and first.attempt == 1
    with session_scope(sessions) as session:
        assert repository.claim(session, job_id, owner="w2", lease_seconds=60) is None
    # the lease expires; another worker takes the job over
    with session_scope(sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(1)))
    with session_scope(sessions) as session:
        second = repository.claim(session, job_id, owner="w2", lease_seconds=60)
    assert second is not None and second.attempt == 2
    columns = UsageColumns(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    with session_scope(sessions) as session:
        late = repository.complete(session, first, result={"late": True}, usage=None, columns=columns)
    assert late is None
    with session_scope(sessions) as session:
        stored = repository.complete(
            session, second, result={"ok": 1}, usage={"total_tokens": 7}, columns=columns
        )
    assert stored is JobStatus.succeeded
    with session_scope(sessions) as session:
        job = repository.get_job(session, job_id, tenant_id="default")
        assert job.status == JobStatus.succeeded.value
        assert job.result == {"ok": 1}
        assert (job.total_tokens, job.attempts) == (7, 2)


def test_cancel_queued_and_running(sessions: sessionmaker[Session]) -> None:
    queued = _create(sessions)
    running = _create(sessions)
    with session_scope(sessions) as session:
        assert repository.cancel_job(session, queued, tenant_id="default").status == JobStatus.cancelled.value
        claim = repository.claim(session, running, owner="w", lease_seconds=60)
    assert claim is not None
    with session_scope(sessions) as session:
        assert repository.cancel_job(session, running, tenant_id="default").status == JobStatus.running.value
        assert repository.start_retry(session, claim, lease_seconds=60) is False
        assert repository.end_cancelled(session, claim) is True
    with session_scope(sessions) as session:
        assert repository.get_job(session, running, tenant_id="default").status == JobStatus.cancelled.value
        with pytest.raises(Conflict):
            repository.cancel_job(session, running, tenant_id="default")


def test_idempotency_key(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        first, created = repository.create_job(
            session, new_job(idempotency_key="k1"), request_fingerprint="aaa"
        )
        assert created
    with session_scope(sessions) as session:
        again, created = repository.create_job(
            session, new_job(idempotency_key="k1"), request_fingerprint="aaa"
        )
        assert not created and again.id == first.id
        with pytest.raises(IdempotencyKeyReused):
            repository.create_job(session, new_job(idempotency_key="k1"), request_fingerprint="bbb")


def test_list_paginates_newest_first_with_filters(sessions: sessionmaker[Session]) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"  # the session's database is shared with other tests
    ids = [_create(sessions, kind="embedding", tier="embeddings", tenant_id=tenant) for _ in range(5)]
    _create(sessions, tenant_id=tenant)
    with session_scope(sessions) as session:
        page, more = repository.list_jobs(session, tenant_id=tenant, kind="embedding", limit=3)
        assert [job.id for job in page] == ids[::-1][:3] and more
        rest, more = repository.list_jobs(
            session, tenant_id=tenant, kind="embedding", limit=3, after=page[-1].id
        )
        assert [job.id for job in rest] == ids[::-1][3:] and not more
