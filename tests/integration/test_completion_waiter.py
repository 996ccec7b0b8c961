"""Waiting for jobs to end (``api.completion_waiter``) against the real Redis and both databases: thousands
of waiters woken by the workers' notices (``workers.completion_notice``), and the database poll that
answers when a notice is lost."""

from __future__ import annotations

import asyncio
import json
import uuid

import redis
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.completion_waiter import CompletionWaiter, Ended, database_poll
from domain.jobs import repository
from domain.storage.models import Job
from tests.factories import new_job
from workers.completion_notice import RESULT_LIMIT_BYTES, CompletionNotice

WAITERS = 2000


def _prefix() -> str:
    return f"waiter-{uuid.uuid4().hex[:8]}"


async def _never(_ids: list[str]) -> set[str]:
    return set()


def test_two_thousand_waiters_wake_on_their_own_notices(redis_url: str) -> None:
    prefix = _prefix()
    client = redis.Redis.from_url(redis_url)
    notice = CompletionNotice(client, prefix, ttl_seconds=60)

    async def run() -> tuple[list[Ended | None], int]:
        waiter = CompletionWaiter(redis_url, prefix, poll_seconds=60, ended=_never)
        waiter.start()
        await asyncio.sleep(0.3)  # subscribed
        try:
            waits = [asyncio.ensure_future(waiter.wait(f"job_{i}", 20)) for i in range(WAITERS)]
            await asyncio.sleep(0.3)
            held = waiter.waiting
            for i in range(0, WAITERS, 2):  # every other job ends
                notice.publish(f"job_{i}", {"x-request-id": f"req_{i}"})
            ended = await asyncio.wait_for(asyncio.gather(*waits[::2]), 20)
            assert all(not wait.done() for wait in waits[1::2])
            for wait in waits[1::2]:
                wait.cancel()
            await asyncio.gather(*waits[1::2], return_exceptions=True)
            return list(ended), held
        finally:
            await waiter.close()

    try:
        ended, held = asyncio.run(run())
    finally:
        client.close()
    assert held == WAITERS
    assert ended == [Ended(f"req_{i}") for i in range(0, WAITERS, 2)]


def test_a_job_ended_before_the_wait_began_answers_at_once(redis_url: str) -> None:
    prefix = _prefix()
    client = redis.Redis.from_url(redis_url)
    CompletionNotice(client, prefix, ttl_seconds=60).publish("job_early", {"x-request-id": "req_early"})
    client.close()

    async def run() -> Ended | None:
        waiter = CompletionWaiter(redis_url, prefix, poll_seconds=60, ended=_never)
        try:
            return await waiter.wait("job_early", 5)
        finally:
            await waiter.close()

    assert asyncio.run(run()) == Ended("req_early")


def test_a_lost_notice_is_answered_by_the_database_poll(
    sessions: sessionmaker[Session], redis_url: str
) -> None:
    with sessions() as session:
        done, _ = repository.create_job(session, new_job())
        pending, _ = repository.create_job(session, new_job())
        session.execute(update(Job).where(Job.id == done.id).values(status="succeeded"))
        session.commit()
        done_id, pending_id = done.id, pending.id

    async def run() -> tuple[Ended | None, Ended | None]:
        waiter = CompletionWaiter(redis_url, _prefix(), poll_seconds=0.2, ended=database_poll(sessions))
        try:
            return await asyncio.gather(waiter.wait(done_id, 10), waiter.wait(pending_id, 1.0))
        finally:
            await waiter.close()

    ended, still_queued = asyncio.run(run())
    assert ended == Ended("")  # no notice, so no request id: but the call is answered
    assert still_queued is None


def test_a_small_result_rides_on_the_notice_and_a_large_one_does_not(redis_url: str) -> None:
    prefix = _prefix()
    client = redis.Redis.from_url(redis_url)
    notice = CompletionNotice(client, prefix, ttl_seconds=60)
    small = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": {"content": "é ok"}}]}
    large = {"object": "list", "data": [{"embedding": [0.125] * (RESULT_LIMIT_BYTES // 4)}]}

    async def run() -> list[Ended | None]:
        waiter = CompletionWaiter(redis_url, prefix, poll_seconds=60, ended=_never)
        waiter.start()
        await asyncio.sleep(0.3)  # subscribed
        try:
            waits = [asyncio.ensure_future(waiter.wait(name, 10)) for name in ("job_s", "job_l", "job_f")]
            await asyncio.sleep(0.3)
            notice.publish("job_s", {"x-request-id": "req_s"}, small)
            notice.publish("job_l", {"x-request-id": "req_l"}, large)
            notice.publish("job_f", {"x-request-id": "req_f"}, {"bad": float("nan")})
            return list(await asyncio.wait_for(asyncio.gather(*waits), 10))
        finally:
            await waiter.close()

    try:
        small_end, large_end, nan_end = asyncio.run(run())
    finally:
        client.close()
    assert small_end is not None and small_end.request_id == "req_s"
    assert small_end.result_json is not None and json.loads(small_end.result_json) == small
    assert large_end == Ended("req_l")  # too large: the call reads the database
    assert nan_end == Ended("req_f")  # not JSON the API could answer: read from the database
