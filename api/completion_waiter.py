"""Waiting for jobs to end, for the drop-in OpenAI endpoints: thousands of waiting calls on one event loop.

One API process keeps one Redis pub/sub connection on ``<prefix>:jobs:done``; a worker publishes
``<job id> <request id>`` there once a job's terminal outcome is stored (``workers.completion_notice``),
followed by a succeeded job's result when it is small: the waiting call answers from it without a
database read.
Each waiting call is an ``asyncio.Future`` in a dict keyed by job id: no thread, no connection and no
query per waiter. Notices can be lost (the subscriber reconnecting, Redis restarted), so every
``poll_seconds`` one query asks the database which of the waited-for jobs have ended meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from domain.status import FINISHED_JOB_STATUSES
from domain.storage.models import Job
from domain.storage.redis_keys import RedisKeys

log = logging.getLogger(__name__)

EndedJobs = Callable[[list[str]], Awaitable[set[str]]]
"""``ended(ids)``: which of ``ids`` are in a terminal status (read from the database)."""

_POLL_CHUNK = 500


def database_poll(sessions: sessionmaker[Session]) -> EndedJobs:
    """``ended`` read from the database, one query per call, on a worker thread."""

    def ended_now(ids: list[str]) -> set[str]:
        with sessions() as session:
            return set(
                session.scalars(select(Job.id).where(Job.id.in_(ids), Job.status.in_(FINISHED_JOB_STATUSES)))
            )

    async def ended(ids: list[str]) -> set[str]:
        return await run_in_threadpool(ended_now, ids)

    return ended


@dataclass(frozen=True)
class Ended:
    """A waited-for job's end: the final attempt's ``x-request-id`` ("" when unknown) and, when the
    notice carried it, the succeeded job's result as rendered JSON (else None: read the database)."""

    request_id: str
    result_json: bytes | None = None


class CompletionWaiter:
    """Futures per waited-for job, resolved by a notice or by the database poll."""

    def __init__(self, redis_url: str, prefix: str, *, poll_seconds: float, ended: EndedJobs) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
        self._keys = RedisKeys(prefix)
        self._poll_seconds = poll_seconds
        self._ended = ended
        self._waiting: dict[str, list[asyncio.Future[Ended]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def waiting(self) -> int:
        """How many calls are waiting now."""
        return sum(len(futures) for futures in self._waiting.values())

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._poll())]

    async def close(self) -> None:
        self._closing = True
        pending = set(self._tasks)
        while pending:  # redis-py can swallow a cancel that lands while it connects: cancel again
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        self._tasks = []
        await self._redis.aclose()  # type: ignore[attr-defined]  # redis-py >= 5 (the stubs lag)

    async def wait(self, job_id: str, timeout: float) -> Ended | None:
        """Wait until ``job_id`` has ended, or None after ``timeout`` seconds. A job that ended before
        the call is seen through its Redis key."""
        self.start()
        future: asyncio.Future[Ended] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        try:
            known = await self._done_key(job_id)
            if known is not None:
                return Ended(known)
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(job_id)
            if futures is not None:
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    del self._waiting[job_id]

    async def request_id(self, job_id: str) -> str:
        """The final attempt's request id as the worker left it ("" when unknown)."""
        return (await self._done_key(job_id)) or ""

    async def _done_key(self, job_id: str) -> str | None:
        try:
            value = await self._redis.get(self._keys.job_done(job_id))
        except RedisError:
            return None
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else None

    def _resolve(self, job_id: str, ended: Ended) -> None:
        for future in self._waiting.get(job_id, ()):
            if not future.done():
                future.set_result(ended)

    def _on_notice(self, data: bytes) -> None:
        """``<job id> <request id>[\n<result JSON>]``: parsed only when a call waits for that job."""
        head, _, body = data.partition(b"\n")
        job_id, _, request_id = head.decode("utf-8", "replace").partition(" ")
        if job_id in self._waiting:
            self._resolve(job_id, Ended(request_id, body or None))

    async def _listen(self) -> None:
        """Resolve waiters from the notices; reconnect after an error (the poll covers the gap)."""
        while not self._closing:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._keys.job_done_channel)
                    while not self._closing:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        data = message.get("data") if message is not None else None
                        if isinstance(data, bytes):
                            self._on_notice(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost connection: the poll answers meanwhile
                log.warning("completion notices interrupted: %s", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        """Every ``poll_seconds``: the waited-for jobs that ended without a notice reaching us."""
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                for chunk in _chunks(list(self._waiting), _POLL_CHUNK):
                    for job_id in await self._ended(chunk):
                        self._resolve(job_id, Ended(await self.request_id(job_id)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: try again next round
                log.warning("completion poll failed: %s", type(exc).__name__)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
