"""The dispatcher against real SQLite, PostgreSQL and Redis: the window, priorities and fair shares,
lost messages, expired leases, sends that fail, and several dispatchers at once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, load_settings
from domain.errors import Unavailable
from domain.jobs import dispatch_repository, repository
from domain.status import JobStatus
from domain.storage.models import Job, WebhookDelivery, utcnow
from domain.storage.redis_keys import RedisKeys
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from testbed.processes import free_port
from tests.factories import new_job
from tests.support.tiers_file import write_tiers
from workers.dispatcher import Dispatcher

pytestmark = pytest.mark.integration


class Recorder:
    """A sender that records what it sent, and can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.labels: dict[str, str] = {}
        self.fail = False
        self._lock = threading.Lock()

    def __call__(self, job_ids: Sequence[str], queue: str, labels: Mapping[str, str]) -> list[str]:
        if self.fail:
            return list(job_ids)
        with self._lock:
            self.sent.extend(job_ids)
            self.labels.update(labels)
        return []


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def tier() -> str:
    """A tier of this test's own, so that rows other tests leave in the database stay out of it."""
    return f"t{uuid.uuid4().hex[:10]}"


def _settings(tmp_path: Path, database_url: str, redis_url: str, tier: str, **overrides: object) -> Settings:
    tiers = write_tiers(tmp_path / "tiers.toml", {tier: {"concurrency": 2}}, {"gpt-4o-mini": tier})
    return load_settings(database_url=database_url, redis_url=redis_url, tiers_file=tiers, **overrides)


def _jobs(sessions: sessionmaker[Session], tier: str, count: int, **overrides: object) -> list[str]:
    with session_scope(sessions) as session:
        return [
            repository.create_job(session, new_job(tier=tier, **overrides))[0].id  # type: ignore[arg-type]
            for _ in range(count)
        ]


def _status(sessions: sessionmaker[Session], job_id: str) -> tuple[str, bool]:
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status, job.dispatched_at is not None


def test_window_fills_by_priority_then_fair_share_and_refills_as_jobs_leave(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url, tier)  # window: 2 x concurrency 2 = 4
    big = _jobs(sessions, tier, 30, tenant_id="big")
    small = _jobs(sessions, tier, 3, tenant_id="small")
    urgent = _jobs(sessions, tier, 1, tenant_id="big", priority=10)[0]
    sender = Recorder()
    dispatcher = Dispatcher(settings, sessions, sender, tiers=[tier])

    first = dispatcher.dispatch_tier(tier)
    assert first.dispatched == 4 and len(sender.sent) == 4
    assert sender.sent[0] == urgent
    # Flower shows each message's job id, kind and model
    assert sender.labels[urgent] == f"{urgent!r}, kind=chat, model=gpt-4o-mini"
    assert len(set(sender.sent) & set(small)) >= 2
    assert all(_status(sessions, job_id) == ("queued", True) for job_id in sender.sent)
    assert dispatcher.dispatch_tier(tier).dispatched == 0  # the window is full

    with session_scope(sessions) as session:  # two workers take jobs off the queue
        for job_id in sender.sent[:2]:
            assert repository.claim(session, job_id, owner="w", lease_seconds=60) is not None
    assert dispatcher.dispatch_tier(tier).dispatched == 2
    assert len(sender.sent) == 6 and len(set(sender.sent)) == 6
    assert set(small) <= set(sender.sent)
    assert sum(1 for job_id in big if _status(sessions, job_id)[1]) == 6 - len(small) - 1


def test_a_send_that_fails_leaves_the_job_in_the_backlog(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url, tier)
    ids = _jobs(sessions, tier, 3)
    sender = Recorder()
    sender.fail = True
    dispatcher = Dispatcher(settings, sessions, sender, tiers=[tier])
    assert dispatcher.dispatch_tier(tier).unsent == 3
    assert all(_status(sessions, job_id) == ("queued", False) for job_id in ids)
    sender.fail = False
    assert dispatcher.dispatch_tier(tier).dispatched == 3
    assert sorted(sender.sent) == sorted(ids)


def test_expired_leases_go_back_to_the_backlog_and_a_cancel_is_honoured(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url, tier)
    (lost,) = _jobs(sessions, tier, 1)
    (cancelled,) = _jobs(sessions, tier, 1, webhook_url="https://hooks.example.com/batchery")
    with session_scope(sessions) as session:
        for job_id in (lost, cancelled):
            assert repository.claim(session, job_id, owner="dead-worker", lease_seconds=60) is not None
        repository.cancel_job(session, cancelled, tenant_id="default")
        session.execute(
            update(Job)
            .where(Job.id.in_([lost, cancelled]))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    sender = Recorder()
    result = Dispatcher(settings, sessions, sender, tiers=[tier]).dispatch_tier(tier)
    assert result.requeued == 2
    assert sender.sent == [lost]
    assert _status(sessions, lost) == ("queued", True)
    assert _status(sessions, cancelled)[0] == JobStatus.cancelled.value
    with session_scope(sessions) as session:  # its terminal event is recorded for the webhook sweep
        delivery = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.subject_id == cancelled)
        ).one()
        assert delivery.event_type == "job.cancelled"
    with session_scope(sessions) as session:  # the next worker claims it as its second attempt
        claim = repository.claim(session, lost, owner="w2", lease_seconds=60)
        assert claim is not None and claim.attempt == 2


def test_lost_messages_are_sent_again(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    prefix = f"test{uuid.uuid4().hex[:8]}"
    settings = _settings(
        tmp_path, database_url, redis_url, tier, redis_prefix=prefix, resend_after_seconds=60
    )
    broker = redis.Redis.from_url(redis_url)
    epoch = RedisKeys(prefix).broker_epoch()
    ids = _jobs(sessions, tier, 3)
    sender = Recorder()
    dispatcher = Dispatcher(settings, sessions, sender, broker, tiers=[tier])
    dispatcher.run_once()  # sets the epoch marker, sends the three
    assert sorted(sender.sent) == sorted(ids) and broker.exists(epoch)
    dispatcher.run_once()
    assert len(sender.sent) == 3  # nothing lost, nothing re-sent

    with session_scope(sessions) as session:  # one message older than resend_after: maybe lost
        session.execute(
            update(Job).where(Job.id == ids[0]).values(dispatched_at=utcnow() - timedelta(minutes=5))
        )
    assert dispatcher.run_once()[0].resent == 1
    assert sender.sent[3:] == [ids[0]]

    broker.delete(epoch)  # the broker restarted empty: every id in the window is re-sent
    assert dispatcher.run_once()[0].resent == 3
    assert sorted(sender.sent[4:]) == sorted(ids)
    broker.delete(epoch)
    broker.close()


def test_a_round_cut_off_by_the_database_is_followed_by_a_round_that_resends_the_window(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url, tier, resend_after_seconds=600)
    ids = _jobs(sessions, tier, 3)
    sender = Recorder()
    dispatcher = Dispatcher(settings, sessions, sender, tiers=[tier])
    dispatcher.run_once()
    assert sorted(sender.sent) == sorted(ids)

    unreachable = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none", pool_size=1)
    dispatcher.sessions = make_session_factory(unreachable)  # the database goes away for a round
    with pytest.raises(Unavailable):
        dispatcher.run_once()
    unreachable.dispose()
    dispatcher.sessions = sessions

    assert dispatcher.run_once(recover=False)[0].resent == 0  # a top-up round recovers nothing
    assert dispatcher.run_once()[0].resent == 3  # the next full round re-sends the whole window
    assert sorted(sender.sent[3:]) == sorted(ids)
    assert dispatcher.run_once()[0].resent == 0  # and only once


def test_dispatchers_at_once_never_send_a_job_twice(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url, tier, dispatch_window_factor=50.0)
    ids = _jobs(sessions, tier, 150)
    sender = Recorder()
    dispatchers = [Dispatcher(settings, sessions, sender, tiers=[tier]) for _ in range(3)]
    barrier = threading.Barrier(len(dispatchers))

    def rounds(dispatcher: Dispatcher) -> None:
        barrier.wait()
        for _ in range(5):
            dispatcher.dispatch_tier(tier)

    threads = [threading.Thread(target=rounds, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(sender.sent) == len(set(sender.sent)) == 100  # the window: 50 x concurrency 2
    assert set(sender.sent) <= set(ids)


def test_take_skips_rows_another_transaction_holds(postgres_url: str, tmp_path: Path, tier: str) -> None:
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    ids = _jobs(sessions, tier, 6)
    holder = sessions()
    try:
        held = dispatch_repository.take(holder, ids[:3], utcnow())  # not committed: rows stay locked
        assert held == ids[:3]
        with session_scope(sessions) as session:
            assert dispatch_repository.take(session, ids, utcnow()) == ids[3:]
    finally:
        holder.rollback()
        holder.close()
    with session_scope(sessions) as session:
        sent = session.scalars(select(Job.id).where(Job.id.in_(ids), Job.dispatched_at.is_not(None)))
        assert sorted(sent) == sorted(ids[3:])
    engine.dispose()


def test_a_dead_workers_jobs_return_in_the_round_after_expiry_with_their_priority_and_place(
    tmp_path: Path, database_url: str, redis_url: str, sessions: sessionmaker[Session], tier: str
) -> None:
    """Window 4: two running jobs of a dead worker (one urgent, one the oldest of its tenant) expire;
    the very next round puts them back in the window ahead of the newer backlog of their tenant."""
    settings = _settings(tmp_path, database_url, redis_url, tier)
    urgent = _jobs(sessions, tier, 1, tenant_id="a", priority=5)[0]
    oldest = _jobs(sessions, tier, 1, tenant_id="a")[0]
    newer = _jobs(sessions, tier, 6, tenant_id="a")
    with session_scope(sessions) as session:
        for job_id in (urgent, oldest):
            assert repository.claim(session, job_id, owner="dead-worker", lease_seconds=60) is not None
    sender = Recorder()
    dispatcher = Dispatcher(settings, sessions, sender, tiers=[tier])
    assert dispatcher.dispatch_tier(tier).dispatched == 4
    assert sender.sent == newer[:4]
    with session_scope(sessions) as session:  # a live worker takes them; the dead worker's leases pass
        for job_id in newer[:4]:
            assert repository.claim(session, job_id, owner="live-worker", lease_seconds=60) is not None
        expired = utcnow() - timedelta(seconds=0.1)
        session.execute(update(Job).where(Job.id.in_([urgent, oldest])).values(lease_expires_at=expired))
    sender.sent.clear()
    result = dispatcher.dispatch_tier(tier)
    assert result.requeued == 2
    # priority first, then its place in the lane (the oldest), ahead of the newer backlog
    assert sender.sent == [urgent, oldest, *newer[4:]]
    with session_scope(sessions) as session:
        rows = session.execute(select(Job.id, Job.priority).where(Job.id.in_([urgent, oldest]))).all()
        priorities = {str(row[0]): int(row[1]) for row in rows}
    assert priorities == {urgent: 5, oldest: 0}
