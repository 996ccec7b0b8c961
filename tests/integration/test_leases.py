"""The one lease helper against real SQLite and PostgreSQL: a heartbeat round renews every lease a
process holds in one statement per table, and notes the ones it lost; a process whose renewals fail
is marked failing and takes no new job."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from alembic import command
from config.settings import load_settings
from domain.batches import lifecycle
from domain.errors import Unavailable
from domain.ids import new_id
from domain.jobs import dispatch_repository, repository
from domain.leases.keeper import LeaseKeeper
from domain.leases.tables import ALL, DELIVERY_LEASES, JOB_LEASES
from domain.provider_batches.states import ProviderBatchState, file_name
from domain.storage.models import Batch, Job, ProviderBatch, WebhookDelivery, utcnow
from domain.storage.sessions import Executor, make_engine, make_session_factory
from domain.webhooks import repository as delivery_repository
from tests.factories import new_job
from workers.heartbeat import Heartbeat
from workers.provider_batch_runner import ProviderBatchRunner
from workers.webhooks import WebhookDeliverer

pytestmark = pytest.mark.integration


def _job(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        return repository.create_job(session, new_job())[0].id


def _delivery(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        delivery = delivery_repository.create_delivery(
            session,
            tenant_id="default",
            event_id="evt_lease",
            event_type="job.succeeded",
            subject_id="job_lease",
            url="https://hooks.example.com/x",
            payload="{}",
        )
        return delivery.id


def test_one_round_renews_every_held_lease_and_notes_the_lost_ones(sessions: sessionmaker[Session]) -> None:
    kept, requeued, delivery_id = _job(sessions), _job(sessions), _delivery(sessions)
    with sessions.begin() as session:
        first = repository.claim(session, kept, owner="w1", lease_seconds=30)
        second = repository.claim(session, requeued, owner="w1", lease_seconds=30)
        claimed = delivery_repository.claim_delivery(session, delivery_id, lease_seconds=30)
    assert first is not None and second is not None and claimed is not None
    keeper = LeaseKeeper()
    keeper.hold(JOB_LEASES, first.token)
    keeper.hold(JOB_LEASES, second.token)
    keeper.hold(DELIVERY_LEASES, claimed.delivery_id)
    # the second job's lease passed and the dispatcher re-queued it (its worker seemed dead)
    with sessions.begin() as session:
        session.execute(
            update(Job).where(Job.id == requeued).values(lease_expires_at=utcnow() - timedelta(1))
        )
        assert dispatch_repository.requeue_expired(session, "standard", now=utcnow(), limit=10)[0] >= 1
    heartbeat = Heartbeat(keeper, lambda: sessions, interval=5, lease_seconds=30)
    before = utcnow()
    assert heartbeat.beat() == 2  # the job still held and the delivery
    assert keeper.statements == 2  # one statement per table, whatever the number of leases
    assert not keeper.is_lost(JOB_LEASES, first.token)
    assert keeper.is_lost(JOB_LEASES, second.token)
    with sessions() as session:
        job = session.get(Job, kept)
        delivery = session.get(WebhookDelivery, claimed.delivery_id)
        assert job is not None and job.lease_expires_at is not None and delivery is not None
        assert job.lease_expires_at >= before + timedelta(seconds=29)
        assert delivery.lease_expires_at is not None and delivery.lease_expires_at >= before + timedelta(
            seconds=29
        )
        gone = session.get(Job, requeued)
        assert gone is not None and gone.status == "queued" and gone.lease_owner is None
    # the lost run's completion is refused by fencing as well
    with sessions.begin() as session:
        assert repository.fail(session, second, error_type="x", message="late") is None


def test_a_delivery_lease_that_passed_is_not_renewed(sessions: sessionmaker[Session]) -> None:
    delivery_id = _delivery(sessions)
    with sessions.begin() as session:
        claimed = delivery_repository.claim_delivery(session, delivery_id, lease_seconds=30)
    assert claimed is not None
    keeper = LeaseKeeper()
    keeper.hold(DELIVERY_LEASES, claimed.delivery_id)
    later = utcnow() + timedelta(seconds=31)  # the holder stalled past its lease: another may claim it

    def connect() -> AbstractContextManager[Executor]:
        return sessions.begin()

    assert keeper.renew_all(connect, now=later, seconds=30) == 0
    with sessions() as session:
        delivery = session.get(WebhookDelivery, claimed.delivery_id)
        assert delivery is not None and delivery.lease_expires_at is not None
        assert delivery.lease_expires_at < later  # not extended: the next claim may take it


def test_a_delivery_row_held_by_a_transaction_does_not_stall_the_heartbeat(postgres_url: str) -> None:
    engine = make_engine(postgres_url, pool_size=2)
    sessions = make_session_factory(engine)
    try:
        job_id, delivery_id = _job(sessions), _delivery(sessions)
        with sessions.begin() as session:
            claim = repository.claim(session, job_id, owner="w1", lease_seconds=30)
            assert delivery_repository.claim_delivery(session, delivery_id, lease_seconds=30) is not None
        assert claim is not None
        keeper = LeaseKeeper(ALL)
        keeper.hold(JOB_LEASES, claim.token)
        keeper.hold(DELIVERY_LEASES, delivery_id)
        with sessions.begin() as holder:  # a long transaction that holds the delivery's row
            holder.execute(
                select(WebhookDelivery.id).where(WebhookDelivery.id == delivery_id).with_for_update()
            )
            heartbeat = Heartbeat(keeper, lambda: sessions, interval=5, lease_seconds=30)
            assert heartbeat.beat() == 1  # the job's lease; the busy delivery row is left for a later round
        assert not keeper.is_lost(DELIVERY_LEASES, delivery_id)
        assert heartbeat.beat() == 2
    finally:
        engine.dispose()


def test_a_process_that_cannot_renew_is_failing_until_a_round_succeeds(
    sessions: sessionmaker[Session],
) -> None:
    job_id = _job(sessions)
    with sessions.begin() as session:
        claim = repository.claim(session, job_id, owner="w1", lease_seconds=30)
    assert claim is not None
    keeper = LeaseKeeper()
    keeper.hold(JOB_LEASES, claim.token)

    def unreachable() -> AbstractContextManager[Executor]:
        raise Unavailable("the database is unavailable")

    with pytest.raises(Unavailable):
        keeper.renew_all(unreachable, now=utcnow(), seconds=30)
    assert keeper.failing
    assert keeper.wait_until_renewing(0.0, lambda _s: None) is False  # no new work while failing
    assert keeper.renew_all(lambda: sessions.begin(), now=utcnow(), seconds=30) == 1
    assert not keeper.failing


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_the_lease_columns_share_one_name_and_the_rename_goes_back(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from cli.migrations import alembic_config, upgrade

    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'rename.db'}"
        upgrade(url)
    else:
        url = str(request.getfixturevalue("postgres_url"))  # migrated to heads

    def columns() -> dict[str, set[str]]:
        engine = make_engine(url)
        try:
            found = inspect(engine)
            tables = ("webhook_deliveries", "batches")
            return {table: {column["name"] for column in found.get_columns(table)} for table in tables}
        finally:
            engine.dispose()

    assert all("lease_expires_at" in names for names in columns().values())
    if database == "sqlite":  # the shared PostgreSQL database stays at heads for the other tests
        command.downgrade(alembic_config(url), "0003")  # 0007 alone: the only revision after 0003
        before = columns()
        assert "locked_until" in before["webhook_deliveries"] and "lease_until" in before["batches"]
        upgrade(url)
        assert all("lease_expires_at" in names for names in columns().values())


def test_a_process_that_cannot_renew_starts_no_delivery_batch_run_or_provider_batch_run(
    sessions: sessionmaker[Session],
) -> None:
    """While the heartbeat fails, a webhook delivery, a batch's ingest or finalization and a provider
    batch's run are left for later: no lease is taken, no attempt counted."""
    delivery_id = _delivery(sessions)
    now = utcnow()
    batch_id, finalizable_id, provider_batch_id = new_id("batch"), new_id("batch"), new_id("pbatch")
    with sessions.begin() as session:
        for id_, status in ((batch_id, "validating"), (finalizable_id, "in_progress")):
            session.add(
                Batch(
                    id=id_,
                    endpoint="/v1/chat/completions",
                    input_file_id="file_lease",
                    completion_window="24h",
                    status=status,
                )
            )
        session.add(
            ProviderBatch(
                id=provider_batch_id,
                provider="openai",
                endpoint="/v1/chat/completions",
                model="gpt-4o-mini",
                state=ProviderBatchState.pending.value,
                filename=file_name(provider_batch_id),
                request_count=1,
                bytes=1,
                polls=0,
                created_at=now,
                updated_at=now,
            )
        )
    keeper = LeaseKeeper(ALL)

    def unreachable() -> AbstractContextManager[Executor]:
        raise Unavailable("the database is unavailable")

    keeper.hold(JOB_LEASES, "a-token")
    with pytest.raises(Unavailable):
        keeper.renew_all(unreachable, now=now, seconds=30)
    assert keeper.failing
    settings = load_settings(database_url="sqlite://")
    with httpx.Client() as client:
        deliverer = WebhookDeliverer(settings, sessions, client, keeper=keeper)
        assert deliverer.deliver(delivery_id) == "skipped"
        runner = ProviderBatchRunner(settings, sessions, client, keeper=keeper)
        assert runner.advance(provider_batch_id) == "skipped"
    outcome, _ = lifecycle.run_ingest(sessions, batch_id, settings, keeper=keeper)
    assert outcome.status == "skipped"
    assert lifecycle.run_finalize(sessions, finalizable_id, settings, keeper=keeper).status is None
    with sessions() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None and delivery.attempt_count == 0 and delivery.lease_expires_at is None
        for id_ in (batch_id, finalizable_id):
            batch = session.get(Batch, id_)
            assert batch is not None and batch.lease_expires_at is None
        provider_batch = session.get(ProviderBatch, provider_batch_id)
        assert provider_batch is not None and provider_batch.lease_expires_at is None
