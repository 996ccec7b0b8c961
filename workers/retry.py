"""The retry policy (pure): which upstream failures can succeed later, and how long to wait.

Retry connection errors, timeouts, malformed 2xx bodies, 408, 409, 429 (but not
``insufficient_quota``) and 500/502/503/504. Everything else (400, 401, 403, 404, 422, quota) fails
at once with the upstream's message. Backoff is exponential with full jitter, capped; the server's
``retry-after-ms``, ``retry-after`` or "try again in Xs" wins over the computed figure. Attempts and a
deadline bound the whole.

The loop itself runs on tenacity (see ``workers.runner``): it sleeps in-process while the worker
keeps the job's lease, so no Celery countdown or ETA ever comes near the broker's visibility
timeout, and a crash mid-wait simply lets the lease expire for the sweeper to re-queue.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from workers.ratelimit_headers import retry_delay
from workers.upstream import UpstreamError, UpstreamHTTPError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
NON_RETRYABLE_CODES = frozenset({"insufficient_quota"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-tier knobs."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    deadline_seconds: float = 3600.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full-jitter exponential backoff before attempt ``attempt + 1`` (``attempt`` starts at 1)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))
        return float(ceiling * (0.5 + 0.5 * rand()))


def is_retryable(error: BaseException) -> bool:
    if not isinstance(error, UpstreamError):
        return False
    if isinstance(error, UpstreamHTTPError):
        return error.status_code in RETRYABLE_STATUS and error.code not in NON_RETRYABLE_CODES
    return error.retryable


def server_delay(error: BaseException) -> float | None:
    """The wait the server asked for, if it named one."""
    if not isinstance(error, UpstreamError):
        return None
    text = error.text if isinstance(error, UpstreamHTTPError) else ""
    return retry_delay(error.headers, text)


def next_delay(
    policy: RetryPolicy,
    error: BaseException,
    attempt: int,
    elapsed: float,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the job should fail now."""
    if not is_retryable(error) or attempt >= policy.max_attempts:
        return None
    delay = server_delay(error)
    if delay is None:
        delay = policy.backoff(attempt, rand)
    if elapsed + delay > policy.deadline_seconds:
        return None
    return max(0.0, delay)
