"""The tail at 200 submissions/s from 256 connections: one API process, open loop, with the admission
limits (the defaults) and without them (limits so high they never bind), rounds alternated on fresh
stacks; per round the API process's CPU share and threads (``bench.procstat``) and the machine's steal.

    python -m bench.tail [--rounds 3] [--seconds 8] [--rate 200] [--connections 256] [--worker]

``--worker`` runs a worker (32 threads) beside the API, draining the jobs as they arrive.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from bench import procstat
from bench.harness import machine, save
from bench.isolated import private_postgres, private_redis
from bench.overload import LOGS, SETTINGS, _api_pids, _payload, _start
from bench.overload_client import open_loop

UNBOUNDED = {"BATCHERY_API_MAX_INFLIGHT_WRITES": "10000", "BATCHERY_API_MAX_INFLIGHT_READS": "10000"}


def one_round(
    pg: Any, redis_server: Any, name: str, rate: float, seconds: float, connections: int, worker: bool = False
) -> dict[str, Any]:
    context, stack = _start(pg, redis_server, LOGS / f"tail-{name}", 1)
    try:
        if worker:
            stack.start_worker("worker", 32)  # drains the jobs as they come, on the same two cores
        port = int(stack.api_url.rsplit(":", 1)[1])
        payload = _payload(port)
        open_loop(port, payload, 100, 200, 32)  # warm-up
        pid = _api_pids(stack)[0]
        cpu, steal = procstat.cpu_seconds(pid), procstat.steal_seconds()
        outcome = open_loop(port, payload, rate, int(rate * seconds), connections)
        return {
            "variant": name,
            "accepted": outcome.count(202),
            "refused": outcome.count(503),
            "failed": outcome.failed,
            "p50_ms": round(outcome.percentile(202, 0.5) * 1000, 1),
            "p99_ms": round(outcome.percentile(202, 0.99) * 1000, 1),
            "max_ms": round(max(outcome.latencies.get(202, [0.0])) * 1000, 1),
            "api_cpu_share": round((procstat.cpu_seconds(pid) - cpu) / outcome.seconds, 2),
            "api_threads": procstat.threads(pid),
            "steal_share": procstat.steal_share(steal, procstat.steal_seconds(), outcome.seconds),
        }
    finally:
        context.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--worker", action="store_true", help="a worker drains the jobs beside the API")
    args = parser.parse_args(argv)
    rounds: dict[str, list[dict[str, Any]]] = {"default limits": [], "no limits": []}
    with private_postgres() as pg, private_redis(LOGS) as redis_server:
        for _ in range(args.rounds):
            for name, settings in (("default limits", {}), ("no limits", UNBOUNDED)):
                SETTINGS.clear()
                SETTINGS.update(settings)
                found = one_round(
                    pg, redis_server, name, args.rate, args.seconds, args.connections, args.worker
                )
                print(json.dumps(found), flush=True)
                rounds[name].append(found)
    record: dict[str, Any] = {
        "rate": args.rate,
        "connections": args.connections,
        "worker": args.worker,
        "rounds": rounds,
    }
    for name, results in rounds.items():
        record[name] = {
            key: statistics.median(float(r[key]) for r in results)
            for key in ("p50_ms", "p99_ms", "refused", "failed")
        }
        print(name, json.dumps(record[name]))
    print(f"machine: {machine()}")
    print("saved", save("tail", record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
