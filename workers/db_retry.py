"""Riding out a database outage: a worker retries its writes instead of failing the job.

``domain.storage.sessions.session_scope`` turns a lost or refused connection into ``Unavailable``. A
worker that meets it while claiming a job, or while storing an outcome, waits with capped exponential
backoff and tries again, for up to ``deadline`` seconds. The job is never marked failed because the
database was away: if the outage outlasts the deadline the error propagates, the job stays as the
database last saw it, and the dispatcher re-sends it (a queued job whose message was used up) or re-
queues it (a running job whose lease runs out).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from domain.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.25
MAX_DELAY = 5.0


def retry_unavailable(
    operation: Callable[[], T],
    *,
    deadline: float,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``operation``; while it raises Unavailable, back off (``FIRST_DELAY`` doubling up to
    ``MAX_DELAY``) and retry, as long as the next try starts within ``deadline`` seconds (on ``clock``)."""
    started = clock()
    wait = wait_exponential(multiplier=FIRST_DELAY, max=MAX_DELAY)

    def past_deadline(state: RetryCallState) -> bool:
        return clock() - started + wait(state) > deadline

    def note(state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning("database unavailable while %s; retrying in %.2fs", what, delay)

    retrying = Retrying(
        retry=retry_if_exception_type(Unavailable),
        stop=past_deadline,
        wait=wait,
        sleep=sleep,
        before_sleep=note,
        reraise=True,
    )
    return retrying(operation)
