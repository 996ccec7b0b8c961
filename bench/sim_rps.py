"""How many chat completions per second the simulator serves on one core, with no latency and no limits.

Usage: ``python bench/sim_rps.py [--duration 3] [--runs 3] [--connections 64]``

The simulator runs in its own process pinned to core 0 (``taskset -c 0`` when available). The load
generator runs here, on another core when there is one: plain asyncio keep-alive HTTP/1.1 connections,
each sending one request at a time, so the client is much cheaper per request than the server. It prints
the requests per second of each run and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}]}).encode()


def request_bytes(port: int) -> bytes:
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer sk-bench\r\n"
        f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


async def connection_loop(port: int, payload: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < stop_at:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done += 1
    finally:
        counts.append(done)
        writer.close()


async def one_run(port: int, seconds: float, connections: int) -> float:
    payload = request_bytes(port)
    counts: list[int] = []
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(connection_loop(port, payload, stop_at, counts) for _ in range(connections)))
    return sum(counts) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3)")
    parser.add_argument("--runs", type=int, default=3, help="number of runs (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from simulator.process import running_simulator

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) > 1
    prefix = ["taskset", "-c", "0"] if pinned else []
    with running_simulator(["--no-limits", "--latency", "fixed:0"], prefix=prefix) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        asyncio.run(one_run(port, 0.5, args.connections))  # warm-up
        rates = []
        for number in range(1, args.runs + 1):
            rate = asyncio.run(one_run(port, args.duration, args.connections))
            rates.append(rate)
            print(f"run {number}: {rate:,.0f} requests/s")
    where = "pinned to core 0" if pinned else "not pinned"
    median = statistics.median(rates)
    print(f"median: {median:,.0f} requests/s ({args.connections} connections, simulator {where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
