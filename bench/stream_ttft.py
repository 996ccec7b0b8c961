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
import resource
import statistics
import time
from typing import Any

import httpx

from bench import procstat
from bench.harness import ROOT, batchery_env, save, services, start_api, start_simulator
from testbed.processes import batchery


def body(index: int) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Tell me about queues {index}"}],
        "max_tokens": 64,
        "stream": True,
    }


async def one(client: httpx.AsyncClient, index: int) -> tuple[float, float]:
    """(seconds to the first content chunk, seconds to the end) of one streamed call."""
    began = time.perf_counter()
    first = 0.0
    async with client.stream("POST", "/v1/chat/completions", json=body(index)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            compact = line.replace(" ", "")
            if not first and '"content":"' in compact and '"content":""' not in compact:
                first = time.perf_counter() - began
            if line == "data: [DONE]":
                break
    return first, time.perf_counter() - began


async def load(base_url: str, calls: int, concurrency: int) -> list[tuple[float, float]]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:

        async def gated(index: int) -> tuple[float, float]:
            async with gate:
                return await one(client, index)

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
        asyncio.run(load(api_url, 20, args.concurrency))  # warm-up: connections, encodings, plans
        direct = asyncio.run(load(f"{sim_url}", args.calls, args.concurrency))
        api_cpu_before, cpu_before = procstat.cpu_seconds(api.popen.pid), client_cpu()
        through = asyncio.run(load(api_url, args.calls, args.concurrency))
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
