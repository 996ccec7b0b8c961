"""Every Redis key name batchery uses, built in one place.

All keys start with a configurable prefix (``batchery`` by default) so that several deployments, or a
test run, can share one Redis server without touching each other's data. Keys that belong together
carry a ``{hash tag}`` so that a Redis Cluster stores them in one slot, which the limiter's Lua script
needs: it reads and writes a bucket and its pause key in one atomic step.

Limiter keys, for a budget named ``NAME``:

- ``<prefix>:limiter:{NAME}:bucket`` a hash with the bucket's levels (``r``, ``t``, ``i``) and the time
  of the last update in milliseconds (``ts``); it expires once idle long enough to be full again.
- ``<prefix>:limiter:{NAME}:pause`` a string set with a millisecond expiry while the upstream asked
  every worker to hold off (a 429 with Retry-After).

Metric keys (``domain.metrics.store`` says what their fields hold): ``<prefix>:metrics:counters``,
``<prefix>:metrics:histograms`` and ``<prefix>:metrics:window:<slot>``.

Completion notices (``workers.completion_notice``): the channel ``<prefix>:jobs:done`` and, per job,
``<prefix>:job:<id>:done``.

The dispatcher's marker: ``<prefix>:dispatch:epoch``. Celery's own queue lists are named by Celery
(``broker_queue_keys``), not prefixed.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "batchery"
BROKER_PRIORITY_SEPARATOR = "\x06\x16"
BROKER_PRIORITY_STEPS = (0, 3, 6, 9)


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Builds Redis key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(ch.isspace() or ch in "{}" for ch in self.prefix):
            raise ValueError("a Redis key prefix is non-empty and has no spaces or braces")

    def limiter_bucket(self, budget: str) -> str:
        """The hash holding the levels of one budget's bucket."""
        return f"{self.prefix}:limiter:{{{budget}}}:bucket"

    def limiter_pause(self, budget: str) -> str:
        """The key that, while it exists, pauses one budget for every worker."""
        return f"{self.prefix}:limiter:{{{budget}}}:pause"

    def limiter_pattern(self) -> str:
        """A SCAN pattern matching every limiter key under this prefix."""
        return f"{self.prefix}:limiter:*"

    def broker_epoch(self) -> str:
        """A marker the dispatcher keeps in the broker's Redis; when it is gone, so may be the queued
        messages (a restart without persistence, a FLUSHALL), and the dispatcher re-sends the window."""
        return f"{self.prefix}:dispatch:epoch"

    @property
    def metrics_counters(self) -> str:
        """The hash of every counter."""
        return f"{self.prefix}:metrics:counters"

    @property
    def metrics_histograms(self) -> str:
        """The hash of every histogram bucket and sum."""
        return f"{self.prefix}:metrics:histograms"

    def metrics_window(self, slot: int) -> str:
        """The hash of one 10-second slot of the last minute's figures."""
        return f"{self.prefix}:metrics:window:{slot}"

    @property
    def job_done_channel(self) -> str:
        """The pub/sub channel a worker announces each job's terminal outcome on (``<job id> <request
        id>``), once it is stored: the waiting drop-in OpenAI calls wake on it."""
        return f"{self.prefix}:jobs:done"

    def job_done(self, job_id: str) -> str:
        """A string set (with an expiry) when a job's terminal outcome is stored: the ``x-request-id`` of
        its final upstream attempt (empty when there was none)."""
        return f"{self.prefix}:job:{job_id}:done"

    def job_stream(self, job_id: str) -> str:
        """A Redis stream (with an expiry) of a streamed job's upstream events, as the worker reads them
        (``workers.stream_relay``): the drop-in endpoint relays them to its caller as SSE."""
        return f"{self.prefix}:job:{job_id}:stream"


def broker_queue_keys(queue: str) -> list[str]:
    """The Redis lists a Celery queue is kept in on a Redis broker (one per priority step)."""
    return [
        queue if step == 0 else f"{queue}{BROKER_PRIORITY_SEPARATOR}{step}" for step in BROKER_PRIORITY_STEPS
    ]
