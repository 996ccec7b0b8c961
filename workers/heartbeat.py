"""The worker's heartbeat: a background thread that renews every lease the process holds.

Every ``heartbeat_seconds`` it renews the leases of the jobs the process runs, of the webhook
deliveries it is sending and of the batch runs it performs, each to ``lease_seconds`` from now, in one
statement per leased table (``domain.leases.keeper``). A process that dies stops renewing, so its
leases pass within ``lease_seconds`` of its last round and the dispatcher re-queues its jobs; one that
lives keeps them however long its calls take. While the database cannot be reached the keeper is
failing, and the process takes no new job, webhook delivery or batch run until a round succeeds again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from domain.errors import Unavailable
from domain.leases.keeper import LeaseKeeper
from domain.storage.models import utcnow
from domain.storage.sessions import Executor, session_scope

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class Heartbeat:
    """Renews ``keeper``'s leases every ``interval`` seconds on a daemon thread, until ``stop()``."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        sessions: Callable[[], sessionmaker[Session]],
        *,
        interval: float,
        lease_seconds: float,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.keeper = keeper
        self._sessions = sessions
        self.interval = interval
        self.lease_seconds = lease_seconds
        self._now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="batchery-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @contextmanager
    def _connect(self) -> Iterator[Executor]:
        with session_scope(self._sessions()) as session:
            yield session

    def beat(self) -> int:
        """One round; answers how many leases were renewed."""
        return self.keeper.renew_all(self._connect, now=self._now(), seconds=self.lease_seconds)

    def _next_wait(self) -> float:
        return min(self.interval, RETRY_SECONDS) if self.keeper.failing else self.interval

    def run(self) -> None:
        # the thread's id, for per-thread CPU accounting (/proc/<pid>/task/<id>; bench/lease_recovery.py)
        log.info("heartbeat: every %.1fs on thread %d", self.interval, threading.get_native_id())
        # while renewals fail, try every second: the leases are renewed, and new work taken, as soon
        # as the database answers again
        while not self._stop.wait(self._next_wait()):
            try:
                self.beat()
            except Unavailable:
                log.warning("heartbeat: the database is unavailable; leases not renewed, taking no new work")
            except Exception:
                log.exception("heartbeat round failed; leases not renewed, taking no new work")
