"""Overload: ``POST /v1/jobs`` from well below one API process's capacity to three times it, and the
closed-loop capacity of 2 API processes (``batchery api --workers 2``) against 1, in the same run.

    python -m bench.overload [--steps 0.5,0.75,1,1.5,2,3] [--seconds 4] [--connections 512]
                             [--storm-connections 16,64,256]

On PostgreSQL (a private server), Redis, and no worker: the jobs stay queued. Default settings.

1. Capacity: closed loop (``--closed-connections`` callers, default 16) against 1 process, then 2
   processes, and so on (``--rounds``, default 3); the medians, and their ratio.
2. Callers that retry at once: closed loop against 1 process from ``--storm-connections`` callers
   (default 16, 64 and 256), each sending again the moment it is answered, refused or not (ignoring
   Retry-After). Per count: the accepted and refused rates, p50 and p99 of accepted requests, and the
   accepted rate against that of the fewest callers: it must not collapse as callers are added.
3. The curve, 1 process: open loop at each step times the measured capacity, from
   ``--connections`` keep-alive connections (``bench.overload_client``). Per offered rate: the
   accepted (202) rate, p50 and p99 of accepted requests from their due time, the share refused
   (503 ``overloaded``), failed or timed-out requests, and the client's CPU per request next to the
   server's.

Saves ``bench/results/overload-*.json`` and draws ``bench/overload.svg`` (``bench.overload_svg``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench import procstat
from bench.bench_stack import CHAT_BODY, BenchStack, bench_stack, tiers_toml
from bench.harness import ROOT, machine, save
from bench.isolated import PrivatePostgres, private_postgres, private_redis
from bench.overload_client import closed_loop, open_loop
from bench.overload_svg import draw
from testbed.processes import spawned_children
from testbed.redis_server import RedisServer

LOGS = ROOT / "var" / "bench-overload"
SVG = ROOT / "bench" / "overload.svg"


def _payload(port: int) -> bytes:
    body = json.dumps({"kind": "chat", "request": CHAT_BODY}, separators=(",", ":")).encode()
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _api_pids(stack: BenchStack) -> list[int]:
    """The API's serving processes: the supervisor's spawned children, or the one process."""
    parent = stack.processes["api"].popen.pid
    return spawned_children(parent) or [parent]


SETTINGS: dict[str, str] = {}
"""``--set NAME=VALUE``: settings for the API processes (default: none, the defaults)."""


def _start(pg: PrivatePostgres, redis_server: RedisServer, log_dir: Path, processes: int) -> Any:
    context = bench_stack(pg, redis_server, log_dir)
    stack = context.__enter__()
    tiers = log_dir / "tiers.toml"
    tiers.write_text(tiers_toml(32))
    stack.start_simulator("--no-limits")
    stack.configure(tiers, **SETTINGS)
    stack.start_api("--workers", str(processes)) if processes > 1 else stack.start_api()
    return context, stack


def capacity(
    pg: PrivatePostgres, redis_server: RedisServer, processes: int, seconds: float, connections: int, tag: str
) -> dict[str, Any]:
    context, stack = _start(pg, redis_server, LOGS / f"capacity-{processes}-{tag}", processes)
    try:
        port = int(stack.api_url.rsplit(":", 1)[1])
        payload = _payload(port)
        closed_loop(port, payload, 1.5, connections)  # warm-up: every process, connections, caches
        pids = _api_pids(stack)
        cpu = sum(procstat.cpu_seconds(pid) for pid in pids)
        outcome = closed_loop(port, payload, seconds, connections)
        server_cpu = sum(procstat.cpu_seconds(pid) for pid in pids) - cpu
        answered = outcome.count(202)
        return {
            "processes": processes,
            "connections": connections,
            "accepted_per_second": round(answered / outcome.seconds, 1),
            "refused": outcome.count(503),
            "p50_ms": round(outcome.percentile(202, 0.5) * 1000, 1),
            "p99_ms": round(outcome.percentile(202, 0.99) * 1000, 1),
            "api_cpu_ms_per_request": round(1000 * server_cpu / max(answered, 1), 2),
            "client_cpu_ms_per_request": round(1000 * outcome.client_cpu_seconds / max(outcome.total, 1), 3),
        }
    finally:
        context.__exit__(None, None, None)


def retry_storm(
    pg: PrivatePostgres, redis_server: RedisServer, seconds: float, counts: list[int]
) -> list[dict[str, Any]]:
    context, stack = _start(pg, redis_server, LOGS / "retry-storm", 1)
    try:
        port = int(stack.api_url.rsplit(":", 1)[1])
        payload = _payload(port)
        closed_loop(port, payload, 1.5, counts[0])  # warm-up
        pid = _api_pids(stack)[0]
        rows: list[dict[str, Any]] = []
        for connections in counts:
            cpu = procstat.cpu_seconds(pid)
            outcome = closed_loop(port, payload, seconds, connections)
            accepted = outcome.count(202) / outcome.seconds
            rows.append(
                {
                    "connections": connections,
                    "accepted_per_second": round(accepted, 1),
                    "refused_per_second": round(outcome.count(503) / outcome.seconds, 1),
                    "p50_ms": round(outcome.percentile(202, 0.5) * 1000, 1),
                    "p99_ms": round(outcome.percentile(202, 0.99) * 1000, 1),
                    "failed": outcome.failed,
                    "accepted_vs_fewest": round(accepted / rows[0]["accepted_per_second"], 2)
                    if rows
                    else 1.0,
                    "api_cpu_share": round((procstat.cpu_seconds(pid) - cpu) / outcome.seconds, 2),
                    "client_cpu_share": round(outcome.client_cpu_seconds / outcome.seconds, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        context.__exit__(None, None, None)


def curve(
    pg: PrivatePostgres, redis_server: RedisServer, rates: list[float], seconds: float, connections: int
) -> list[dict[str, Any]]:
    context, stack = _start(pg, redis_server, LOGS / "curve", 1)
    try:
        port = int(stack.api_url.rsplit(":", 1)[1])
        payload = _payload(port)
        open_loop(port, payload, 100, 200, 32)  # warm-up
        pid = _api_pids(stack)[0]
        rows = []
        for rate in rates:
            count = int(rate * seconds)
            cpu, steal = procstat.cpu_seconds(pid), procstat.steal_seconds()
            outcome = open_loop(port, payload, rate, count, connections)
            server_cpu = procstat.cpu_seconds(pid) - cpu
            accepted, refused = outcome.count(202), outcome.count(503)
            rows.append(
                {
                    "offered_per_second": round(rate, 1),
                    "requests": count,
                    "accepted_per_second": round(accepted / outcome.seconds, 1),
                    "p50_ms": round(outcome.percentile(202, 0.5) * 1000, 1),
                    "p99_ms": round(outcome.percentile(202, 0.99) * 1000, 1),
                    "refused_share": round(refused / count, 3),
                    "refused_p99_ms": round(outcome.percentile(503, 0.99) * 1000, 1),
                    "failed": outcome.failed,
                    "other_statuses": {
                        str(s): len(v) for s, v in outcome.latencies.items() if s not in (202, 503)
                    },
                    "api_cpu_share": round(server_cpu / outcome.seconds, 2),
                    "client_cpu_share": round(outcome.client_cpu_seconds / outcome.seconds, 2),
                    "steal_share": procstat.steal_share(steal, procstat.steal_seconds(), outcome.seconds),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        context.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="0.5,0.75,1,1.5,2,3", help="offered rates, times the capacity")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each step of the curve")
    parser.add_argument("--connections", type=int, default=512, help="connections of the curve")
    parser.add_argument("--closed-seconds", type=float, default=5.0, help="length of each capacity round")
    parser.add_argument("--closed-connections", type=int, default=16)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternated capacity rounds of 1 and 2 processes"
    )
    parser.add_argument("--storm-connections", default="16,64,256", help="callers of the retry storm")
    parser.add_argument("--storm-seconds", type=float, default=4.0, help="length of each retry-storm step")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE, a setting of the API")
    parser.add_argument("--skip-capacity", type=float, help="use this capacity, measure no capacity")
    args = parser.parse_args(argv)
    SETTINGS.update(item.split("=", 1) for item in args.set)
    record: dict[str, Any] = {}
    with private_postgres() as pg, private_redis(LOGS) as redis_server:
        rounds: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for index in range(0 if args.skip_capacity else args.rounds):
            for processes in (1, 2):
                found = capacity(
                    pg, redis_server, processes, args.closed_seconds, args.closed_connections, str(index)
                )
                print(json.dumps(found), flush=True)
                rounds[processes].append(found)
        one = args.skip_capacity or statistics.median(r["accepted_per_second"] for r in rounds[1])
        two = args.skip_capacity or statistics.median(r["accepted_per_second"] for r in rounds[2])
        record["capacity"] = {
            "one_process_per_second": one,
            "two_processes_per_second": two,
            "ratio": round(two / one, 2),
            "rounds": rounds,
        }
        print(json.dumps({k: v for k, v in record["capacity"].items() if k != "rounds"}), flush=True)
        counts = [int(count) for count in args.storm_connections.split(",") if count]
        record["retry_storm"] = retry_storm(pg, redis_server, args.storm_seconds, counts) if counts else []
        steps = [float(step) for step in args.steps.split(",")]
        record["curve"] = curve(
            pg, redis_server, [one * step for step in steps], args.seconds, args.connections
        )
    record["curve_connections"] = args.connections
    SVG.write_text(draw(record["curve"], capacity=one, connections=args.connections))
    print(f"machine: {machine()}")
    print("saved", save("overload", record), "and", SVG)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
