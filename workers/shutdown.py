"""Warm shutdown: calls in flight finish, everything else goes back to the backlog.

When the worker receives SIGTERM, Celery stops taking messages and waits for its running tasks. The
``ShutdownGate`` makes those tasks end soon: a job that is about to start an attempt, or is sleeping
before one (a retry backoff, a rate-limit wait), raises ``ShuttingDown`` instead, and the runner gives
the job back (status ``queued``, not sent) for the dispatcher to send to another worker. A call already
in flight runs to its end (bounded by the tier's timeout) and its result is stored.

If calls are still in flight when the grace period ends, ``on_expired`` runs: the worker gives those
jobs back as well and exits. Their calls may have reached the provider, so such a job can be called
once more; a grace period above the tiers' timeouts avoids that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from config.errors import BatcheryError

log = logging.getLogger(__name__)


class ShuttingDown(BatcheryError):
    """The worker is shutting down; the job goes back to the backlog."""


class ShutdownGate:
    """Whether this process is stopping, and sleeps that end early (raising) when it starts to."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._timer: threading.Timer | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def check(self) -> None:
        """Raise ShuttingDown once shutdown has begun."""
        if self._stopping.is_set():
            raise ShuttingDown()

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``; raise ShuttingDown at once, or as soon as shutdown begins meanwhile."""
        if self._stopping.wait(max(0.0, seconds)):
            raise ShuttingDown()

    def begin(self, grace_seconds: float, on_expired: Callable[[], None] | None = None) -> None:
        """Start shutting down; ``on_expired`` runs if the process is still alive after the grace."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.warning("shutting down: calls in flight have %.0fs to finish", grace_seconds)
        if on_expired is not None:
            self._timer = threading.Timer(grace_seconds, on_expired)
            self._timer.daemon = True
            self._timer.start()
