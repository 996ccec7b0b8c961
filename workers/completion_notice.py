"""Announcing a job's stored terminal outcome, for the drop-in OpenAI endpoints that wait on it.

Once the outcome is committed, the worker sets ``<prefix>:job:<id>:done`` (holding the ``x-request-id``
of the final upstream attempt, for the waiting call's answer) and publishes ``<id> <request id>`` on
``<prefix>:jobs:done`` (``domain.storage.redis_keys``). A succeeded job's result, when its JSON is at most
``RESULT_LIMIT_BYTES``, follows on the message after a newline, exactly as the API would render it: the
waiting call answers from the notice without reading the database. A lost notice costs only latency:
the waiting API also checks the database every ``openai_poll_seconds``. A Redis error is logged, never
raised: the outcome is already stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import redis

from domain.storage.redis_keys import RedisKeys

log = logging.getLogger(__name__)

RESULT_LIMIT_BYTES = 16 * 1024
"""Results up to this size ride on the notice (a chat completion is 1 to 3 KiB; embeddings are larger
and are read from the database)."""


def result_json(result: Mapping[str, Any] | None) -> bytes | None:
    """``result`` as the API's JSON answer renders it, or None when it is absent, too large or not JSON."""
    if result is None:
        return None
    try:
        body = json.dumps(result, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        return None
    return body if len(body) <= RESULT_LIMIT_BYTES else None


class CompletionNotice:
    """Publishes terminal outcomes on one Redis client."""

    def __init__(self, client: redis.Redis[bytes], prefix: str, ttl_seconds: int) -> None:
        self._client = client
        self._keys = RedisKeys(prefix)
        self._ttl = ttl_seconds

    def publish(
        self, job_id: str, headers: Mapping[str, str] | None, result: Mapping[str, Any] | None = None
    ) -> None:
        """``result``: a succeeded job's stored result (None for any other outcome)."""
        raw = (headers or {}).get("x-request-id", "") or ""
        request_id = "".join(ch for ch in raw[:200] if "!" <= ch <= "~")  # a safe header value, no spaces
        message = f"{job_id} {request_id}".encode()
        body = result_json(result)
        if body is not None:
            message += b"\n" + body
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._keys.job_done(job_id), request_id, ex=self._ttl)
            pipe.publish(self._keys.job_done_channel, message)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("completion notice not sent: %s", type(exc).__name__, extra={"job_id": job_id})
