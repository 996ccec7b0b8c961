"""An httpx transport made of several connection pools, each thread keeping to one of them.

httpcore's connection pool looks at every connection it holds, under one lock, each time a request
starts or ends. That is nothing with a few connections and dominates the CPU with hundreds: a worker
holding 400 calls in flight spent most of its time there. Splitting the connections into pools of
``SHARD_SIZE`` keeps that work small, and since each worker thread sends one request at a time, giving
each thread its own pool (round robin, on first use) keeps the pools evenly loaded.

The pools share one TLS context, so certificates are loaded once.
"""

from __future__ import annotations

import itertools
import math
import ssl
import threading
from types import TracebackType

import certifi
import httpx

SHARD_SIZE = 32


class ShardedTransport(httpx.BaseTransport):
    """``shards`` ``httpx.HTTPTransport`` pools of at most ``per_shard`` connections each."""

    def __init__(self, *, max_connections: int, shard_size: int = SHARD_SIZE) -> None:
        shards = max(1, math.ceil(max_connections / shard_size))
        per_shard = math.ceil(max_connections / shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        context = ssl.create_default_context(cafile=certifi.where())  # as httpx does by default
        self._shards = [httpx.HTTPTransport(verify=context, limits=limits) for _ in range(shards)]
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._local = threading.local()

    def _shard(self) -> httpx.HTTPTransport:
        index: int | None = getattr(self._local, "index", None)
        if index is None:
            with self._lock:
                index = next(self._next) % len(self._shards)
            self._local.index = index
        return self._shards[index]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._shard().handle_request(request)

    def close(self) -> None:
        for shard in self._shards:
            shard.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
