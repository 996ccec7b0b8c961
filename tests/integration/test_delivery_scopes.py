"""Scopes mean what they say: the ``jobs:*`` scopes reach jobs' webhook deliveries only. A batch's
deliveries share the table, but ``/v1/jobs/{batch_id}/webhook-deliveries/...`` answers 404 to a
``jobs:read`` key (reading) and a ``jobs:write`` key (redelivering), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from config.settings import Settings, load_settings
from domain.jobs import repository
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.webhooks import events
from tests.factories import new_job
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        webhook_secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        webhook_allowed_networks=["127.0.0.1/32"],
    )


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _delivery(sessions: sessionmaker[Session], tenant: str, subject: str, event_type: str) -> str:
    with session_scope(sessions) as session:
        return events.record_event(
            session,
            tenant_id=tenant,
            event_type=event_type,
            subject_id=subject,
            data={"id": subject},
            url="http://127.0.0.1:9/hook",
        )


def test_job_scopes_do_not_reach_a_batch_s_deliveries(
    settings: Settings, sessions: sessionmaker[Session], database_url: str
) -> None:
    tenant = f"scopes-{uuid.uuid4().hex[:8]}"
    batch_id = f"batch_{uuid.uuid4().hex[:24]}"
    batch_delivery = _delivery(sessions, tenant, batch_id, "batch.completed")
    with session_scope(sessions) as session:
        job, _ = repository.create_job(session, new_job(tenant_id=tenant, webhook_url="http://127.0.0.1:9/h"))
    job_delivery = _delivery(sessions, tenant, job.id, "job.succeeded")
    reader = bearer(create_key(database_url, tenant, ["jobs:read"]))
    writer = bearer(create_key(database_url, tenant, ["jobs:write"]))
    with TestClient(create_app(settings)) as client:
        base = f"/v1/jobs/{batch_id}/webhook-deliveries"
        assert client.get(f"{base}/{batch_delivery}", headers=reader).status_code == 404
        assert client.get(base, headers=reader).status_code == 404
        refused = client.post(f"{base}/{batch_delivery}/redeliver", headers=writer)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        own = f"/v1/jobs/{job.id}/webhook-deliveries/{job_delivery}"
        assert client.get(own, headers=reader).status_code == 200  # a job's own deliveries still answer
        assert client.post(f"{own}/redeliver", headers=writer).status_code == 202
