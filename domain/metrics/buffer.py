"""A ``MetricStore`` that gathers writes for a moment and sends them together.

A worker finishing hundreds of jobs a second would otherwise send one pipeline of about twenty
``HINCRBY`` per job. Increments of the same field add up in memory, so a buffer flushed every
``interval`` seconds sends one pipeline per interval whatever the rate, with far fewer commands: the
fields are bounded by the label values (``domain.metrics.catalog``), not by the number of jobs.

The figures reach Redis at most ``interval`` seconds late (a quarter of a second by default, far below
any scrape interval), and a process that dies abruptly loses at most that much. Window counters are
filed under the slot of the flush, which is never more than ``interval`` away from the slot of the
event. A flush that fails is logged (at most once a minute) and dropped, as a direct write's failure is.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from domain.metrics.store import MetricBatch, MetricStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.25
ERROR_LOG_INTERVAL = 60.0


class BufferedMetricStore(MetricStore):
    """``write`` adds to a batch in memory; a background thread writes it every ``interval`` seconds."""

    def __init__(
        self,
        client: redis.Redis[Any],
        prefix: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, prefix)
        self.interval = interval
        self.clock = clock
        self._pending = MetricBatch()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_error_log = -ERROR_LOG_INTERVAL

    def write(self, batch: MetricBatch, now: float) -> None:
        """Add ``batch`` to what the next flush sends (never raises, never waits for Redis)."""
        with self._lock:
            self._pending.counters.update(batch.counters)
            self._pending.histograms.update(batch.histograms)
            self._pending.window.update(batch.window)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="batchery-metrics", daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def flush(self) -> None:
        """Send what was gathered, in one pipelined round trip; a failure is logged and dropped."""
        with self._lock:
            batch, self._pending = self._pending, MetricBatch()
        if not batch:
            return
        try:
            MetricStore.write(self, batch, now=self.clock())
        except (redis.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_INTERVAL:
                self._last_error_log = now
                log.warning("job metrics not written: %s", type(exc).__name__)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()
