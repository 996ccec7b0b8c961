"""A failure is stored redacted: an upstream that echoes a key in its message or error body leaves no
key in the job row (SQLite, real connections)."""

from __future__ import annotations

import pytest

from domain.jobs import repository
from domain.status import JobStatus
from domain.storage.models import Job
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from tests.factories import new_job

pytestmark = pytest.mark.integration

PROVIDER_KEY = "sk-live-0123456789abcdefABCDEF"
BATCHERY_KEY = "bk_0123456789ab_" + "d" * 40


def test_failure_message_and_body_are_stored_redacted(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, pool_size=1)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions) as session:
            job, _ = repository.create_job(session, new_job())
        with session_scope(sessions) as session:
            claim = repository.claim(session, job.id, owner="w", lease_seconds=60)
            assert claim is not None
            stored = repository.fail(
                session,
                claim,
                error_type="invalid_request_error",
                message=f"Incorrect API key provided: {PROVIDER_KEY} (Authorization: Bearer {PROVIDER_KEY})",
                status_code=401,
                body={"error": {"message": f"key {PROVIDER_KEY}", "echo": [f"Bearer {BATCHERY_KEY}"]}},
            )
            assert stored is JobStatus.failed
        with session_scope(sessions) as session:
            row = session.get(Job, job.id)
            assert row is not None
            text = f"{row.error_message} {row.result}"
    finally:
        engine.dispose()
    assert PROVIDER_KEY not in text and BATCHERY_KEY not in text
    assert row.error_message is not None and row.error_message.startswith(
        "Incorrect API key provided: sk-[REDACTED]"
    )
    assert row.status == "failed" and row.error_status == 401
