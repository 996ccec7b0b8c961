"""Backing off a starved job: a job whose budget cannot serve it soon waits a while before going back.

When the limiter's wait is longer than a worker may hold a slot for (``LimiterTimeout``), the job is
given back to the backlog and the dispatcher sends it again. Given back at once, the same starved jobs
come straight back, are refused again and go back again: a loop of database writes and broker messages
that serves nobody. So before giving a job back, the worker sleeps a backoff that doubles with each
give-back of the same budget in this process (``base``, ``2 * base``, ... up to ``cap`` seconds, never
longer than the limiter's own wait), and starts again from ``base`` once the budget has not starved
for ``forget_after`` seconds. A worker that is shutting down stops sleeping at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from workers.limiter import LimiterTimeout


class StarvedBudgets:
    """Consecutive give-backs per budget in one process, and the backoff they have earned."""

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 10.0,
        forget_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self.clock = clock
        self._lock = threading.Lock()
        self._streaks: dict[str, tuple[int, float]] = {}

    def delay(self, budget: str, wait: float) -> float:
        """Seconds to sleep before giving back a job refused with ``wait`` seconds to go on ``budget``."""
        now = self.clock()
        with self._lock:
            count, last = self._streaks.get(budget, (0, now))
            if now - last > self.forget_after:
                count = 0
            self._streaks[budget] = (count + 1, now)
        backoff = min(self.cap, self.base * 2.0 ** min(count, 32))
        return max(0.0, min(wait, backoff * random.uniform(0.8, 1.0)))

    def back_off(
        self,
        starved: LimiterTimeout,
        *,
        sleep: Callable[[float], None] = time.sleep,
        stopping: Callable[[], bool] | None = None,
        step: float = 0.5,
    ) -> float:
        """Sleep the backoff ``starved`` has earned, in steps, stopping early when ``stopping()``."""
        left = self.delay(starved.budget, starved.wait)
        slept = 0.0
        while left > 0 and not (stopping is not None and stopping()):
            nap = min(step, left)
            sleep(nap)
            slept += nap
            left -= nap
        return slept


STARVED = StarvedBudgets()
"""This process's record (one per worker process, shared by its threads)."""
