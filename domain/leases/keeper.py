"""The leases one process holds, for its heartbeat to renew.

A runner ``hold``s a lease once its claim landed and ``drop``s it when its run ends (``holding`` does
both). Each heartbeat round renews every lease held, one statement per leased table
(``domain.leases.lease.renew``), and notes the ones the rows no longer carry as lost: the runner then
stores nothing under them (its fenced writes would be refused anyway). A round that fails (the
database is unreachable) marks the keeper as *failing* until one succeeds; a failing process takes no
new work (``wait_until_renewing``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime

from domain.leases.lease import LeasedTable, renew
from domain.storage.sessions import Executor


class LeaseKeeper:
    """A thread-safe register of held leases, by table, and the outcome of the last renewal."""

    def __init__(
        self, tables: Sequence[LeasedTable] = (), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``tables`` gives the order of each round's renewals (jobs first: theirs matter most)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[LeasedTable, set[str]] = {leased: set() for leased in tables}
        self._lost: set[tuple[str, str]] = set()
        self._failing_since: float | None = None
        self.rounds = 0
        self.statements = 0

    def hold(self, leased: LeasedTable, key: str) -> None:
        with self._lock:
            self._held.setdefault(leased, set()).add(key)
            self._lost.discard((leased.name, key))

    def drop(self, leased: LeasedTable, key: str) -> None:
        with self._lock:
            self._held.get(leased, set()).discard(key)
            self._lost.discard((leased.name, key))

    @contextmanager
    def holding(self, leased: LeasedTable, key: str) -> Iterator[None]:
        """Hold the lease named ``key`` for the block."""
        self.hold(leased, key)
        try:
            yield
        finally:
            self.drop(leased, key)

    def held(self, leased: LeasedTable) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held.get(leased, ()))

    def is_lost(self, leased: LeasedTable, key: str) -> bool:
        """A renewal found the lease gone (re-queued or claimed by another process)."""
        with self._lock:
            return (leased.name, key) in self._lost

    @property
    def failing(self) -> bool:
        """The last renewal round failed, and none has succeeded since."""
        return self._failing_since is not None

    def renew_all(
        self,
        connect: Callable[[], AbstractContextManager[Executor]],
        *,
        now: datetime,
        seconds: float,
    ) -> int:
        """One heartbeat round: renew every lease held, one statement per table that has some; answers
        how many were renewed. An error (the database unreachable) marks the keeper failing and
        propagates."""
        self.rounds += 1
        renewed = 0
        try:
            with self._lock:
                tables = list(self._held)
            for leased in tables:
                keys = self.held(leased)
                if not keys:
                    continue
                with connect() as executor:
                    kept = renew(executor, leased, keys, now=now, seconds=seconds)
                self.statements += 1
                renewed += len(kept)
                if leased.holder is None:
                    continue  # a row skipped because it was busy is not lost: fencing decides
                with self._lock:
                    current = self._held.get(leased, set())
                    # a lease dropped meanwhile (its run ended and released it) is not lost
                    self._lost.update((leased.name, key) for key in keys - kept if key in current)
        except BaseException:
            if self._failing_since is None:
                self._failing_since = self._clock()
            raise
        self._failing_since = None
        return renewed

    def wait_until_renewing(self, timeout: float, sleep: Callable[[float], None], step: float = 0.5) -> bool:
        """Block while the keeper is failing, at most ``timeout`` seconds; True once it renews again."""
        deadline = self._clock() + timeout
        while self.failing:
            if self._clock() >= deadline:
                return False
            sleep(step)
        return True
