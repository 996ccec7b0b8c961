"""Streamed drop-in calls: time to first token through batchery against a direct call to the simulator.

Usage: ``python -m bench.stream_ttft [--calls 200] [--concurrency 10] [--latency 200] [--chunk-ms 5]``

The simulator answers streamed chat completions, its first event ``--latency`` ms after the request
and the next ones ``--chunk-ms`` apart. The same calls (``stream: true``, ``--concurrency`` at a time)
go straight to it (the baseline), then through batchery (API, one worker, the simulator behind it).
Per call: the time to the first content chunk (TTFT) and to the end of the stream. Printed: medians
and p99 of both, batchery's added time, and the ratio to the direct figures, from one run; and the
load client's own CPU time against the API's, so the client is known to cost less than what it
measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import time
from typing import Any

from bench import procstat
from bench.dropin import port_of
from bench.harness import ROOT, batchery_env, save, services, start_api, start_simulator
from testbed.processes import batchery


def body(index: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Tell me about queues {index}"}],
        "max_tokens": 64,
        "stream": True,
    }


def request_bytes(port: int, index: int) -> bytes:
    payload = json.dumps(body(index), separators=(",", ":")).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
    head += "authorization: Bearer sk-bench\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return (head + f"content-length: {len(payload)}\r\n\r\n").encode() + payload


FIRST_TEXT = re.compile(rb'"content": ?"[^"]')
"""The first chunk with text in it (the role chunk's content is empty)."""


async def one(port: int, index: int) -> tuple[float, float]:
    """(seconds to the first content chunk, seconds to the end) of one streamed call, read from a raw
    socket (the load client must cost far less than the server it measures: no HTTP library)."""
    began = time.perf_counter()
    first = 0.0
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(port, index))
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
        tail = b""
        while data := await reader.read(65536):
            if not first and FIRST_TEXT.search(tail + data):
                first = time.perf_counter() - began
            tail = data[-64:]
    finally:
        writer.close()
    return first, time.perf_counter() - began


async def load(port: int, calls: int, concurrency: int) -> list[tuple[float, float]]:
    gate = asyncio.Semaphore(concurrency)

    async def gated(index: int) -> tuple[float, float]:
        async with gate:
            return await one(port, index)

    return await asyncio.gather(*(gated(i) for i in range(calls)))


def figures(samples: list[tuple[float, float]]) -> dict[str, float]:
    ttft = sorted(s[0] for s in samples)
    total = sorted(s[1] for s in samples)
    p99 = max(0, int(len(ttft) * 0.99) - 1)
    return {
        "ttft_p50_ms": round(statistics.median(ttft) * 1000, 1),
        "ttft_p99_ms": round(ttft[p99] * 1000, 1),
        "total_p50_ms": round(statistics.median(total) * 1000, 1),
        "total_p99_ms": round(total[p99] * 1000, 1),
    }


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=int, default=200, help="the simulator's time to first token, ms")
    parser.add_argument("--chunk-ms", type=int, default=5)
    args = parser.parse_args()
    record: dict[str, Any] = vars(args).copy()
    with services(ROOT / "bench" / "logs" / "stream_ttft") as running:
        sim_url = start_simulator(
            running,
            "--no-limits",
            "--latency",
            f"fixed:{args.latency}",
            "--stream-chunk-ms",
            str(args.chunk_ms),
        )
        env = batchery_env(running, sim_url, BATCHERY_LOG_LEVEL="WARNING")
        api_url = start_api(running, env)
        api = next(process for process in running.processes if process.name == "api")
        running.start("worker", batchery("worker", "--concurrency", "32"), env)
        asyncio.run(load(port_of(api_url), 20, args.concurrency))  # warm-up: connections, encodings, plans
        direct = asyncio.run(load(port_of(sim_url), args.calls, args.concurrency))
        api_cpu_before, cpu_before = procstat.cpu_seconds(api.popen.pid), client_cpu()
        through = asyncio.run(load(port_of(api_url), args.calls, args.concurrency))
        api_cpu = procstat.cpu_seconds(api.popen.pid) - api_cpu_before
        record["direct"], record["batchery"] = figures(direct), figures(through)
        record["added_ms"] = {
            k: round(record["batchery"][k] - record["direct"][k], 1) for k in record["direct"]
        }
        record["ratio"] = {k: round(record["batchery"][k] / record["direct"][k], 2) for k in record["direct"]}
        record["cpu_seconds"] = {"load_client": round(client_cpu() - cpu_before, 2), "api": round(api_cpu, 2)}
        for name in ("direct", "batchery", "added_ms", "ratio", "cpu_seconds"):
            print(f"{name}: {json.dumps(record[name])}")
    print(f"saved {save('stream_ttft', record)}")


if __name__ == "__main__":
    main()
