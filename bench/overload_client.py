"""The load generators of the overload benchmark (``bench.overload``), on raw keep-alive HTTP/1.1
connections and uvloop, so the client costs far less CPU than the server it loads.

- ``open_loop``: request ``i`` is due at ``start + i / rate`` whatever happened to the earlier ones;
  its latency runs from that due time (a request that waits for a free connection is charged for the
  wait: no coordinated omission). Latencies are kept per status, so accepted and refused requests are
  reported apart; a connection that fails or a request unanswered after ``timeout`` is counted.
- ``closed_loop``: ``connections`` callers, each sending its next request when the last is answered;
  the answered rate is the server's capacity at that concurrency.

Each returns the client's own CPU seconds, to show it stayed cheap.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field

import uvloop

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Outcome:
    latencies: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    failed: int = 0
    """Connections that broke and requests not answered within the timeout."""
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0

    def count(self, status: int) -> int:
        return len(self.latencies.get(status, []))

    @property
    def total(self) -> int:
        return sum(len(values) for values in self.latencies.values()) + self.failed

    def percentile(self, status: int, share: float) -> float:
        ordered = sorted(self.latencies.get(status, []))
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _exchange(stream: Stream, payload: bytes) -> int:
    reader, writer = stream
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _connect(port: int, connections: int) -> list[Stream]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]


def _close(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def _open_loop(
    port: int, payload: bytes, rate: float, count: int, connections: int, timeout: float
) -> Outcome:
    pool: asyncio.Queue[Stream] = asyncio.Queue()
    streams = await _connect(port, connections)
    for stream in streams:
        pool.put_nowait(stream)
    outcome = Outcome()

    async def one(due: float) -> None:
        stream = await pool.get()
        try:
            status = await asyncio.wait_for(_exchange(stream, payload), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            outcome.failed += 1
            stream[1].close()
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
            return
        pool.put_nowait(stream)
        outcome.latencies[status].append(time.perf_counter() - due)

    cpu = _cpu()
    start = time.perf_counter() + 0.05
    tasks = []
    for index in range(count):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    outcome.seconds = time.perf_counter() - start
    outcome.client_cpu_seconds = _cpu() - cpu
    _close(list(pool._queue))  # type: ignore[attr-defined]
    return outcome


async def _closed_loop(port: int, payload: bytes, seconds: float, connections: int) -> Outcome:
    streams = await _connect(port, connections)
    outcome = Outcome()
    cpu = _cpu()
    start = time.perf_counter()
    deadline = start + seconds

    async def caller(stream: Stream) -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            status = await _exchange(stream, payload)
            outcome.latencies[status].append(time.perf_counter() - sent)

    await asyncio.gather(*(caller(stream) for stream in streams))
    outcome.seconds = time.perf_counter() - start
    outcome.client_cpu_seconds = _cpu() - cpu
    _close(streams)
    return outcome


def open_loop(
    port: int, payload: bytes, rate: float, count: int, connections: int, timeout: float = 30.0
) -> Outcome:
    return uvloop.run(_open_loop(port, payload, rate, count, connections, timeout))


def closed_loop(port: int, payload: bytes, seconds: float, connections: int) -> Outcome:
    return uvloop.run(_closed_loop(port, payload, seconds, connections))
