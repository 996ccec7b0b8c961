"""The retry policy (pure): which upstream failures can succeed later, and how long to wait.

Retry connection errors, timeouts, malformed 2xx bodies, 408, 409, 429 (but not
``insufficient_quota``) and 500/502/503/504. Everything else (400, 401, 403, 404, 422, quota) fails
at once with the upstream's message. Backoff is exponential with *equal* jitter, capped: the wait
before attempt ``n + 1`` is drawn uniformly between half and all of ``min(cap, base * 2 ** (n - 1))``.
Equal jitter, not full jitter, on purpose: full jitter may draw a wait near zero and hit an upstream
that just failed at once, while equal jitter always rests at least half the backoff and still spreads
the workers' retries over the other half. The server's ``retry-after-ms``, ``retry-after`` or "try
again in Xs" wins over the computed figure. Attempts and a deadline bound the whole.

The loop itself runs on tenacity (``RetryPlan`` gives it its stop and its wait): it sleeps in-process
while the worker's heartbeat keeps the job's lease, so no Celery countdown or ETA ever comes near the
broker's visibility timeout, and a crash mid-wait simply lets the lease expire for the dispatcher to
re-queue.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState

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
        """Equal-jitter exponential backoff before attempt ``attempt + 1`` (``attempt`` starts at 1)."""
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


class Cancelled(Exception):
    """The job was cancelled while it waited for its next attempt."""


class RetryPlan:
    """The tenacity stop, wait and sleep of one run, from one decision per attempt.

    After each failed attempt ``delay`` asks the policy once (``next_delay``: the server's delay first,
    else jittered backoff, within the attempts and the deadline) and keeps the answer for that attempt,
    so the stop and the wait can never disagree: ``stop`` is "no delay", and ``wait`` is the delay.
    ``first_attempt`` is the job's attempt number at the run's first call (a job claimed again after
    its worker died continues its count). Time comes from ``clock``, sleeping from ``sleep``; after
    each backoff ``cancelled`` is asked, and a job cancelled meanwhile raises ``Cancelled`` instead of
    calling the upstream again."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        first_attempt: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.policy = policy
        self.first_attempt = first_attempt
        self.clock = clock
        self._sleep = sleep
        self.rand = rand
        self.cancelled = cancelled
        self.started = clock()
        self._decided: tuple[int, float | None] | None = None

    def delay(self, state: RetryCallState) -> float | None:
        """Seconds before the next attempt, or None to stop; decided once per attempt."""
        number = state.attempt_number
        if self._decided is None or self._decided[0] != number:
            error = state.outcome.exception() if state.outcome is not None else None
            attempt = self.first_attempt + number - 1
            elapsed = self.clock() - self.started
            decided = None if error is None else next_delay(self.policy, error, attempt, elapsed, self.rand)
            self._decided = (number, decided)
        return self._decided[1]

    def stop(self, state: RetryCallState) -> bool:
        return self.delay(state) is None

    def wait(self, state: RetryCallState) -> float:
        return self.delay(state) or 0.0

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)
        if self.cancelled():
            raise Cancelled()
