"""Each event happens once: cancels racing the worker that ends a running job, with real concurrency on
PostgreSQL. The worker's write holds the job's row while the cancels arrive over HTTP, so every cancel
reads the job as running and then waits on the row, which is exactly the race that recorded a second
``job.cancelled`` (or a ``job.succeeded`` after the worker's own)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from config.settings import Settings, load_settings
from domain.jobs import repository
from domain.jobs.repository import Claim
from domain.storage.models import WebhookDelivery
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tokens.estimates import UsageColumns
from domain.webhooks import events
from tests.factories import new_job
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration

CANCELS = 5


@pytest.fixture
def settings(postgres_url: str, redis_url: str) -> Settings:
    return load_settings(
        database_url=postgres_url,
        redis_url=redis_url,
        webhook_secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        webhook_allowed_networks=["127.0.0.1/32"],
    )


@pytest.fixture
def sessions(postgres_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(postgres_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def tenant() -> str:
    return f"once-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(settings: Settings, postgres_url: str, tenant: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=bearer(create_key(postgres_url, tenant))) as test_client:
        yield test_client


def _running_job(sessions: sessionmaker[Session], tenant: str) -> Claim:
    with session_scope(sessions) as session:
        job, _ = repository.create_job(
            session, new_job(tenant_id=tenant, webhook_url="http://127.0.0.1:9/hook")
        )
        claim = repository.claim(session, job.id, owner="worker-1", lease_seconds=60)
    assert claim is not None
    return claim


def _events(sessions: sessionmaker[Session], job_id: str) -> dict[str, int]:
    with session_scope(sessions) as session:
        rows = session.execute(
            select(WebhookDelivery.event_type, func.count())
            .where(WebhookDelivery.subject_id == job_id)
            .group_by(WebhookDelivery.event_type)
        )
        return {str(row[0]): int(row[1]) for row in rows}


def _race(
    client: TestClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    claim: Claim,
    end: Callable[[Session], object],
) -> list[int]:
    """The worker ends the job in a transaction left open until every cancel waits on the row; answers
    the cancels' status codes."""
    statuses: list[int] = []
    with session_scope(sessions) as worker:
        assert end(worker)
        events.record_job_event(worker, claim.job_id, settings)
        worker.flush()

        def cancel() -> None:
            statuses.append(client.post(f"/v1/jobs/{claim.job_id}/cancel").status_code)

        threads = [threading.Thread(target=cancel) for _ in range(CANCELS)]
        for thread in threads:
            thread.start()
        waiting = 0
        for _ in range(500):
            with sessions() as probe:
                waiting = probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
            if waiting >= CANCELS:
                break
            time.sleep(0.01)
        assert waiting >= CANCELS, "the cancels never waited on the worker's row"
    for thread in threads:
        thread.join(30)
    return statuses


def test_cancels_racing_the_worker_s_cancel_record_one_job_cancelled(
    client: TestClient, sessions: sessionmaker[Session], settings: Settings, tenant: str
) -> None:
    claim = _running_job(sessions, tenant)
    assert client.post(f"/v1/jobs/{claim.job_id}/cancel").status_code == 200  # requested, still running
    statuses = _race(client, sessions, settings, claim, lambda s: repository.end_cancelled(s, claim))
    assert statuses == [409] * CANCELS
    assert _events(sessions, claim.job_id) == {"job.cancelled": 1}


def test_cancels_racing_a_completion_record_no_second_job_succeeded(
    client: TestClient, sessions: sessionmaker[Session], settings: Settings, tenant: str
) -> None:
    claim = _running_job(sessions, tenant)

    def complete(session: Session) -> object:
        return repository.complete(session, claim, result={"ok": True}, usage=None, columns=UsageColumns())

    statuses = _race(client, sessions, settings, claim, complete)
    assert statuses == [409] * CANCELS
    assert _events(sessions, claim.job_id) == {"job.succeeded": 1}


def test_concurrent_cancels_of_a_queued_job_record_one_event(
    client: TestClient, sessions: sessionmaker[Session], tenant: str
) -> None:
    with session_scope(sessions) as session:
        job, _ = repository.create_job(
            session, new_job(tenant_id=tenant, webhook_url="http://127.0.0.1:9/hook")
        )
    statuses: list[int] = []
    start = threading.Barrier(CANCELS)

    def cancel() -> None:
        start.wait()
        statuses.append(client.post(f"/v1/jobs/{job.id}/cancel").status_code)

    threads = [threading.Thread(target=cancel) for _ in range(CANCELS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] + [409] * (CANCELS - 1)
    assert _events(sessions, job.id) == {"job.cancelled": 1}
