"""The Redis broker transport, with one client per channel instead of one per command.

Kombu's Redis channel builds a new ``redis.Redis`` object for every command it sends outside the event
loop: each publish, each acknowledgement, each event. The object reuses a pooled connection, but
building it copies redis-py's table of response callbacks (about 170 entries) every time, which costs
more CPU than the command itself: about seven of them per job (send, sent event, receipt,
acknowledgement, task events). A ``redis.Redis`` object is safe to share between threads (each command
takes a connection from the pool), so this channel keeps one per pool and rebuilds it only when kombu
replaces the pool (after a disconnect).

Messages, keys and behaviour are kombu's own: Flower and any other client of the same broker see no
difference. Celery is told to use it with ``broker_transport`` (``infra.celery_conf``).
"""

from __future__ import annotations

import threading
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A kombu Redis channel that reuses its synchronous client, and pipelines batched publishes."""

    # Kombu turns publish batches off when the client may retry a timed-out command, because a replayed
    # pipeline can deliver a message twice. batchery's messages carry only an id whose claim is fenced,
    # so a duplicate is harmless (tests/e2e/test_faults_duplicate.py), and one round trip per dispatcher
    # round is worth more than the rare duplicate.
    supports_batch_publish = True

    _shared_client: Any = None
    _shared_lock = threading.Lock()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        client = self._shared_client
        if client is None or client.connection_pool is not pool:
            with self._shared_lock:
                client = self._shared_client
                if client is None or client.connection_pool is not pool:
                    client = super()._create_client(asynchronous=False)  # type: ignore[no-untyped-call]
                    self._shared_client = client
        return client


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """Kombu's Redis transport with ``Channel`` above."""

    Channel = Channel
    supports_batch_publish = True
