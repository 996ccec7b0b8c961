"""Helpers for batch tests: input lines, a database picked per test (SQLite or PostgreSQL), and
finishing a batch's jobs the way a worker would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from domain.jobs import repository
from domain.storage.models import Batch, Job
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tokens.estimates import usage_columns
from tests.factories import chat_request


def request_line(
    custom_id: str, body: dict[str, Any] | None = None, url: str = "/v1/chat/completions"
) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body or chat_request()})


def jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def chat_answer(text: str, prompt_tokens: int = 5, completion_tokens: int = 2) -> dict[str, Any]:
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return {"id": f"chatcmpl-{text}", "object": "chat.completion", "choices": [], "usage": usage}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url, pool_size=2)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def batch_jobs(sessions: sessionmaker[Session], batch_id: str) -> list[Job]:
    with session_scope(sessions) as session:
        return list(session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.id)))


def succeed(sessions: sessionmaker[Session], job_id: str, body: dict[str, Any]) -> None:
    """Claim the job and store ``body`` as its 2xx answer."""
    with session_scope(sessions) as session:
        claim = repository.claim(session, job_id, owner="test", lease_seconds=60)
    assert claim is not None
    with session_scope(sessions) as session:
        usage = body.get("usage")
        repository.complete(session, claim, result=body, usage=usage, columns=usage_columns("chat", usage))


def fail(sessions: sessionmaker[Session], job_id: str, **error: Any) -> None:
    """Claim the job and store a failure (``status_code`` and ``body`` for an HTTP answer)."""
    with session_scope(sessions) as session:
        claim = repository.claim(session, job_id, owner="test", lease_seconds=60)
    assert claim is not None
    with session_scope(sessions) as session:
        repository.fail(session, claim, **error)


def start(sessions: sessionmaker[Session], job_id: str) -> repository.Claim:
    """Claim the job, as a worker about to call the upstream."""
    with session_scope(sessions) as session:
        claim = repository.claim(session, job_id, owner="test", lease_seconds=60)
    assert claim is not None
    return claim


def retire_tenant(sessions: sessionmaker[Session], tenant: str) -> None:
    """End every unfinished batch and job of ``tenant``, so that no worker or tick of a later test
    sharing the database picks them up."""
    with session_scope(sessions) as session:
        session.execute(
            update(Job)
            .where(Job.tenant_id == tenant, Job.status.in_(["queued", "running"]))
            .values(status="cancelled")
        )
        session.execute(
            update(Batch)
            .where(
                Batch.tenant_id == tenant,
                Batch.status.not_in(["completed", "failed", "expired", "cancelled"]),
            )
            .values(status="cancelled")
        )
