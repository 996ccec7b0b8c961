"""The runner against a scripted upstream (httpx.MockTransport) and real databases: each attempt is
logged once, with its outcome, status, error and the wait after it; lost attempts, shutdown and
cancellation; and ``GET /v1/jobs/{id}`` shows the log."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from config.settings import Settings, load_settings
from domain.errors import Unavailable
from domain.jobs import attempts, repository
from domain.leases.keeper import LeaseKeeper
from domain.leases.tables import JOB_LEASES
from domain.storage.models import Job, utcnow
from domain.storage.sessions import Executor, make_engine, make_session_factory, session_scope
from tests.factories import new_job
from tests.support.keys import bearer, create_key
from tests.support.tiers_file import write_tiers
from workers.buckets import Budget
from workers.dispatcher import Dispatcher
from workers.heartbeat import Heartbeat
from workers.limiter import MemoryLimiter
from workers.runner import JobRunner
from workers.upstream import make_upstream_client

pytestmark = pytest.mark.integration

OK_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def tier() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str, tier: str) -> Settings:
    values = {"concurrency": 2, "max_attempts": 4, "backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05}
    tiers = write_tiers(tmp_path / "tiers.toml", {tier: values}, {"gpt-4o-mini": tier})
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        tiers_file=tiers,
        openai_base_url="http://upstream.test/v1",
        openai_api_key="sk-test-attempt-log",
    )


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _upstream(
    *answers: tuple[int, dict[str, Any]], on_call: Callable[[], None] | None = None
) -> httpx.Client:
    script = list(answers)

    def handle(_request: httpx.Request) -> httpx.Response:
        if on_call is not None:
            on_call()
        status, body = script.pop(0) if len(script) > 1 else script[0]
        return httpx.Response(status, json=body)

    client = make_upstream_client(max_connections=4)
    client._transport = httpx.MockTransport(handle)
    return client


_RUNNERS: list[JobRunner] = []


@pytest.fixture(autouse=True)
def _close_runners() -> Iterator[None]:
    yield
    while _RUNNERS:
        _RUNNERS.pop().close()


def _runner(
    settings: Settings, sessions: sessionmaker[Session], client: httpx.Client, **extra: Any
) -> JobRunner:
    runner = JobRunner(settings, sessions, client, None, worker_id="w", sleep=lambda _s: None, **extra)
    _RUNNERS.append(runner)
    return runner


def _job(sessions: sessionmaker[Session], tier: str) -> str:
    with session_scope(sessions) as session:
        return repository.create_job(session, new_job(tier=tier))[0].id


def _log(sessions: sessionmaker[Session], job_id: str) -> list[tuple[int, str, int | None]]:
    with session_scope(sessions) as session:
        return [(row.number, row.outcome, row.status_code) for row in attempts.list_attempts(session, job_id)]


def _error(status: int) -> dict[str, Any]:
    return {"error": {"message": f"upstream said {status}", "type": "server_error", "code": None}}


def test_retries_are_logged_with_their_waits(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    job_id = _job(sessions, tier)
    client = _upstream((503, _error(503)), (500, _error(500)), (200, OK_BODY))
    assert _runner(settings, sessions, client).run(job_id) == "succeeded"
    assert _log(sessions, job_id) == [(1, "retrying", 503), (2, "retrying", 500), (3, "succeeded", 200)]
    with session_scope(sessions) as session:
        rows = attempts.list_attempts(session, job_id)
        job = repository.get_job(session, job_id, tenant_id="default")
        assert job.attempts == 3 and job.status == "succeeded"
        assert rows[0].error == "upstream said 503" and rows[0].error_type == "server_error"
        assert rows[0].wait_before_next_seconds is not None and rows[0].wait_before_next_seconds > 0
        assert rows[2].wait_before_next_seconds is None and rows[2].error is None
        assert all(row.started_at is not None and row.started_at <= row.finished_at for row in rows)


def test_a_permanent_error_is_one_failed_attempt(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    job_id = _job(sessions, tier)
    client = _upstream((400, {"error": {"message": "bad messages", "type": "invalid_request_error"}}))
    assert _runner(settings, sessions, client).run(job_id) == "failed"
    assert _log(sessions, job_id) == [(1, "failed", 400)]
    with session_scope(sessions) as session:
        job = repository.get_job(session, job_id, tenant_id="default")
        assert (job.status, job.error_status, job.error_message) == ("failed", 400, "bad messages")


def test_an_attempt_whose_worker_died_is_logged_as_lost(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    job_id = _job(sessions, tier)
    with session_scope(sessions) as session:  # a worker claims it, then dies mid-call
        assert repository.claim(session, job_id, owner="dead", lease_seconds=60) is not None
        session.execute(
            update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    Dispatcher(settings, sessions, lambda _ids, _q, _labels: [], tiers=[tier]).dispatch_tier(tier)
    assert _runner(settings, sessions, _upstream((200, OK_BODY))).run(job_id) == "succeeded"
    assert _log(sessions, job_id) == [(1, "lost", None), (2, "succeeded", 200)]


def test_shutdown_gives_the_job_back_uncounted(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    job_id = _job(sessions, tier)
    calls: list[int] = []
    client = _upstream((200, OK_BODY), on_call=lambda: calls.append(1))
    runner = _runner(settings, sessions, client, stopping=lambda: True)
    assert runner.run(job_id) == "requeued"
    assert calls == [] and _log(sessions, job_id) == []
    with session_scope(sessions) as session:
        job = repository.get_job(session, job_id, tenant_id="default")
        assert (job.status, job.attempts, job.dispatched_at, job.lease_owner) == ("queued", 0, None, None)


def test_a_cancel_during_retries_ends_the_job_after_its_call(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    job_id = _job(sessions, tier)

    def cancel() -> None:
        with session_scope(sessions) as session:
            repository.cancel_job(session, job_id, tenant_id="default")

    calls: list[int] = []
    client = _upstream((503, _error(503)), on_call=lambda: (calls.append(1), cancel()))
    assert _runner(settings, sessions, client).run(job_id) == "cancelled"
    assert len(calls) == 1  # never retried after the cancel
    assert _log(sessions, job_id) == [(1, "failed", 503)]
    with session_scope(sessions) as session:
        assert repository.get_job(session, job_id, tenant_id="default").status == "cancelled"


def test_a_cancel_during_a_successful_call_keeps_its_result(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    job_id = _job(sessions, tier)

    def cancel() -> None:
        with session_scope(sessions) as session:
            repository.cancel_job(session, job_id, tenant_id="default")

    client = _upstream((200, OK_BODY), on_call=cancel)
    _runner(settings, sessions, client).run(job_id)
    with session_scope(sessions) as session:
        job = repository.get_job(session, job_id, tenant_id="default")
        assert job.status == "cancelled"
        assert job.result == OK_BODY and job.total_tokens == 6
    assert _log(sessions, job_id) == [(1, "succeeded", 200)]


def test_the_api_shows_the_attempt_log(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    tier = f"t{uuid.uuid4().hex[:10]}"
    values = {"concurrency": 2, "max_attempts": 3, "backoff_base_seconds": 0.01}
    tiers = write_tiers(tmp_path / "tiers.toml", {tier: values}, {"gpt-4o-mini": tier})
    settings = load_settings(
        database_url=postgres_url,
        redis_url=redis_url,
        tiers_file=tiers,
        openai_base_url="http://upstream.test/v1",
    )
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    with TestClient(create_app(settings), headers=bearer(create_key(postgres_url))) as api:
        job = api.post("/v1/jobs", json={"kind": "chat", "request": new_job().request}).json()
        assert job["attempts_log"] is None
        assert api.get(f"/v1/jobs/{job['id']}").json()["attempts_log"] == []
        _runner(settings, sessions, _upstream((502, _error(502)), (200, OK_BODY))).run(job["id"])
        shown = api.get(f"/v1/jobs/{job['id']}").json()
    engine.dispose()
    assert shown["status"] == "succeeded" and shown["attempts"] == 2
    first, second = shown["attempts_log"]
    assert (first["number"], first["outcome"], first["status_code"]) == (1, "retrying", 502)
    assert first["error"] == "upstream said 502" and first["wait_before_next_seconds"] > 0
    assert (second["number"], second["outcome"], second["status_code"]) == (2, "succeeded", 200)
    assert set(first) == {
        "number",
        "outcome",
        "started_at",
        "finished_at",
        "status_code",
        "error_type",
        "error",
        "wait_before_next_seconds",
    }


def test_a_starved_job_backs_off_longer_each_time_before_it_is_given_back(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    limiter = MemoryLimiter()
    limits = settings.tiers.limits_for("gpt-4o-mini")
    assert limits is not None
    limiter.pause(Budget.for_model(tier, "gpt-4o-mini", limits, 1.0), 3600)  # starved for an hour
    job_id = _job(sessions, tier)
    slept: list[list[float]] = []
    for _ in range(3):
        naps: list[float] = []
        runner = JobRunner(
            settings, sessions, _upstream((200, OK_BODY)), limiter, worker_id="w", sleep=naps.append
        )
        _RUNNERS.append(runner)
        assert runner.run(job_id) == "requeued"
        slept.append(naps)
        with session_scope(sessions) as session:
            job = repository.get_job(session, job_id, tenant_id="default")
            assert (job.status, job.attempts, job.dispatched_at) == ("queued", 0, None)
    first, second, third = (sum(naps) for naps in slept)
    assert 0.8 <= first <= 1.0 and 1.6 <= second <= 2.0 and 3.2 <= third <= 4.0
    assert all(nap <= 0.5 for naps in slept for nap in naps)  # in steps, so shutdown cuts it short


def test_a_run_whose_lease_a_renewal_found_gone_stores_nothing(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    """During the call, the job's lease passes and another worker claims it; the heartbeat's next round
    finds the lease gone. The first run then stores nothing, and the other's claim stands."""
    job_id = _job(sessions, tier)
    keeper = LeaseKeeper()
    taken: list[repository.Claim] = []

    def lease_lost_meanwhile() -> None:
        with session_scope(sessions) as session:
            expired = utcnow() - timedelta(seconds=1)
            session.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=expired))
            other = repository.claim(session, job_id, owner="other-worker", lease_seconds=30)
            assert other is not None
            taken.append(other)
        heartbeat = Heartbeat(keeper, lambda: sessions, interval=5, lease_seconds=30)
        assert heartbeat.beat() == 0

    runner = _runner(
        settings, sessions, _upstream((200, OK_BODY), on_call=lease_lost_meanwhile), keeper=keeper
    )
    assert runner.run(job_id) == "lease_lost"
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "running" and job.result is None
        assert job.lease_owner == taken[0].token and job.attempts == 2
    assert _log(sessions, job_id) == []  # the first run's attempt is not logged as a success


def test_a_process_whose_heartbeat_cannot_renew_claims_no_job(
    settings: Settings, sessions: sessionmaker[Session], tier: str
) -> None:
    """While the heartbeat's renewals fail, a job's message finds the runner waiting for a round to
    succeed, up to ``db_retry_seconds``; then the job is left queued, never claimed nor called."""
    job_id = _job(sessions, tier)
    now = [0.0]
    keeper = LeaseKeeper(clock=lambda: now[0])
    keeper.hold(JOB_LEASES, "w:another-run")

    def unreachable() -> AbstractContextManager[Executor]:
        raise Unavailable("the database is unavailable")

    with pytest.raises(Unavailable):
        keeper.renew_all(unreachable, now=utcnow(), seconds=30)
    calls: list[int] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    upstream = _upstream((200, OK_BODY), on_call=lambda: calls.append(1))
    runner = JobRunner(settings, sessions, upstream, None, worker_id="w", sleep=sleep, keeper=keeper)
    _RUNNERS.append(runner)
    assert runner.run(job_id) == "skipped"
    assert now[0] >= settings.db_retry_seconds and calls == []
    with session_scope(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None and (job.status, job.attempts, job.lease_owner) == ("queued", 0, None)
