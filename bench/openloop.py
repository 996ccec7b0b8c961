"""An open-loop HTTP load generator: request ``i`` is due at ``start + i / rate`` whatever happened to
the earlier ones, and its latency runs from that due time to the last byte of the answer, so a slow
server is charged for the requests that queued behind a slow one (no coordinated omission).

Plain asyncio keep-alive HTTP/1.1 connections keep the generator much cheaper than the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any


def request_bytes(method: str, path: str, port: int, body: Any = None) -> bytes:
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
    if body is not None:
        head += "content-type: application/json\r\n"
    head += f"content-length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _run(port: int, payloads: list[bytes], rate: float, connections: int) -> LoadResult:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    result = LoadResult()

    async def one(payload: bytes, due: float) -> None:
        reader, writer = await pool.get()
        try:
            status = await _exchange(reader, writer, payload)
        finally:
            pool.put_nowait((reader, writer))
        result.latencies.append(time.perf_counter() - due)
        result.statuses[status] = result.statuses.get(status, 0) + 1

    start = time.perf_counter() + 0.05
    tasks = []
    for index, payload in enumerate(payloads):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(payload, due)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    return result


def open_loop(port: int, payloads: list[bytes], rate: float, connections: int = 32) -> LoadResult:
    """Send ``payloads`` at ``rate`` per second over up to ``connections`` connections."""
    return asyncio.run(_run(port, payloads, rate, connections))
