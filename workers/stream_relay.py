"""Relaying a streamed job's upstream events to whoever waits for them, through a Redis stream per job.

The worker that holds the call appends each server-sent event as it reads it (``XADD`` to
``<prefix>:job:<id>:stream``, fields ``e`` for the event name when there is one and ``d`` for its
data), then an end entry (field ``end``). A drop-in call with ``stream: true`` reads the entries with
``XREAD BLOCK`` and writes them to its caller as SSE (``api.stream_answer``). The stream expires
``ttl`` seconds after its last entry and is capped in length, so an unread stream costs Redis little.

A Redis error is logged and the relay stops for that call, never the job: the job's result is the
aggregated stream, stored as for any job, and the waiting caller falls back to it.
"""

from __future__ import annotations

import logging

import redis

from domain.storage.redis_keys import RedisKeys

log = logging.getLogger(__name__)

MAX_ENTRIES = 100_000
"""Far more events than one answer has: a cap against a runaway stream, not a limit on answers."""


class StreamRelay:
    """Appends a job's stream events to its Redis stream, on one Redis client shared by the process."""

    def __init__(self, client: redis.Redis[bytes], prefix: str, ttl_seconds: int) -> None:
        self._client = client
        self._keys = RedisKeys(prefix)
        self._ttl = ttl_seconds

    def for_job(self, job_id: str) -> JobRelay:
        return JobRelay(self, self._keys.job_stream(job_id))

    def append(self, key: str, fields: dict[str, str]) -> bool:
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.xadd(key, fields, maxlen=MAX_ENTRIES, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("stream relay stopped: %s", type(exc).__name__, extra={"relay_key": key})
            return False
        return True


class JobRelay:
    """One job's relay: its events, then one end."""

    def __init__(self, relay: StreamRelay, key: str) -> None:
        self._relay = relay
        self._key = key
        self.sent = 0
        self._broken = False

    def event(self, name: str | None, data: str) -> None:
        if self._broken:
            return
        fields = {"d": data} if name is None else {"e": name, "d": data}
        self._broken = not self._relay.append(self._key, fields)
        self.sent += 1

    def end(self) -> None:
        if not self._broken:
            self._relay.append(self._key, {"end": "1"})
