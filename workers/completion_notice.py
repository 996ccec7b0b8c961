"""Announcing a job's stored terminal outcome, for the drop-in OpenAI endpoints that wait on it.

Once the outcome is committed, the worker sets ``<prefix>:job:<id>:done`` (holding the ``x-request-id``
of the final upstream attempt, for the waiting call's answer) and publishes ``<id> <request id>`` on
``<prefix>:jobs:done`` (``domain.storage.redis_keys``). A lost notice costs only latency: the waiting API
also checks the database every ``openai_poll_seconds``. A Redis error is logged, never raised: the
outcome is already stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from domain.storage.redis_keys import RedisKeys

log = logging.getLogger(__name__)


class CompletionNotice:
    """Publishes terminal outcomes on one Redis client."""

    def __init__(self, client: redis.Redis[bytes], prefix: str, ttl_seconds: int) -> None:
        self._client = client
        self._keys = RedisKeys(prefix)
        self._ttl = ttl_seconds

    def publish(self, job_id: str, headers: Mapping[str, str] | None) -> None:
        raw = (headers or {}).get("x-request-id", "") or ""
        request_id = "".join(ch for ch in raw[:200] if "!" <= ch <= "~")  # a safe header value, no spaces
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._keys.job_done(job_id), request_id, ex=self._ttl)
            pipe.publish(self._keys.job_done_channel, f"{job_id} {request_id}")
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("completion notice not sent: %s", type(exc).__name__, extra={"job_id": job_id})
