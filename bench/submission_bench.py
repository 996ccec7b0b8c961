"""Submission: ``POST /v1/jobs`` latency at a fixed rate, and ``POST /v1/jobs/bulk`` throughput.

Both run against the API alone (no workers: the jobs stay queued), on private servers.

- Latency: ``POST /v1/jobs`` open loop at ``rate`` requests/s (``bench.openloop``) from 32 connections,
  then from 256 (callers hold many); baseline: ``GET /healthz`` at the same rate in the same run, the
  floor of the HTTP stack on this machine.
- Bulk: requests of 1,000 jobs from two clients; baseline: the same jobs one per ``POST /v1/jobs`` from
  eight clients, in the same run.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.bench_stack import CHAT_BODY, bench_stack, tiers_toml
from bench.isolated import PrivatePostgres
from bench.openloop import open_loop, request_bytes
from testbed.redis_server import RedisServer


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def run_latency(
    pg: PrivatePostgres,
    redis_server: RedisServer,
    log_dir: Path,
    *,
    rate: float,
    seconds: float,
    runs: int = 1,
) -> dict[str, Any]:
    """``runs`` rounds of ``POST /v1/jobs`` then ``GET /healthz`` at ``rate``, each on a fresh stack;
    medians over the rounds, and each round's figures with the steal share of its window."""
    rounds = [
        _latency_round(pg, redis_server, log_dir / f"round-{index}", rate=rate, seconds=seconds)
        for index in range(runs)
    ]
    return {
        "rate": rate,
        "requests": rounds[0]["requests"],
        "runs": len(rounds),
        "post_jobs_p50_ms": statistics.median(r["post_jobs_p50_ms"] for r in rounds),
        "post_jobs_p99_ms": statistics.median(r["post_jobs_p99_ms"] for r in rounds),
        "post_jobs_256_p50_ms": statistics.median(r["post_jobs_256_p50_ms"] for r in rounds),
        "post_jobs_256_p99_ms": statistics.median(r["post_jobs_256_p99_ms"] for r in rounds),
        "healthz_p50_ms": statistics.median(r["healthz_p50_ms"] for r in rounds),
        "healthz_p99_ms": statistics.median(r["healthz_p99_ms"] for r in rounds),
        "api_cpu_ms_per_post": statistics.median(r["api_cpu_ms_per_post"] for r in rounds),
        "api_cpu_ms_per_healthz": statistics.median(r["api_cpu_ms_per_healthz"] for r in rounds),
        "rounds": rounds,
    }


def _latency_round(
    pg: PrivatePostgres, redis_server: RedisServer, log_dir: Path, *, rate: float, seconds: float
) -> dict[str, Any]:
    with bench_stack(pg, redis_server, log_dir) as stack:
        tiers = log_dir / "tiers.toml"
        tiers.write_text(tiers_toml(32))
        stack.start_simulator("--no-limits")
        stack.configure(tiers)
        port = int(stack.start_api().rsplit(":", 1)[1])
        api_pid = stack.processes["api"].popen.pid
        count = int(rate * seconds)
        job = request_bytes("POST", "/v1/jobs", port, {"kind": "chat", "request": CHAT_BODY})
        health = request_bytes("GET", "/healthz", port)
        open_loop(port, [job] * 100, rate)  # warm-up
        cpu, steal = procstat.cpu_seconds(api_pid), procstat.steal_seconds()
        submitted = open_loop(port, [job] * count, rate)
        post_cpu = procstat.cpu_seconds(api_pid) - cpu
        steal_share = procstat.steal_share(steal, procstat.steal_seconds(), submitted.seconds)
        many = open_loop(port, [job] * count, rate, connections=256)
        cpu = procstat.cpu_seconds(api_pid)
        floor = open_loop(port, [health] * count, rate)
        health_cpu = procstat.cpu_seconds(api_pid) - cpu
        return {
            "rate": rate,
            "requests": count,
            "post_jobs_p50_ms": _ms(submitted.percentile(0.50)),
            "post_jobs_p99_ms": _ms(submitted.percentile(0.99)),
            "post_jobs_max_ms": _ms(max(submitted.latencies)),
            "post_jobs_statuses": submitted.statuses,
            "post_jobs_256_p50_ms": _ms(many.percentile(0.50)),
            "post_jobs_256_p99_ms": _ms(many.percentile(0.99)),
            "post_jobs_256_statuses": many.statuses,
            "healthz_p50_ms": _ms(floor.percentile(0.50)),
            "healthz_p99_ms": _ms(floor.percentile(0.99)),
            "achieved_rate": round(count / submitted.seconds, 1),
            "api_cpu_ms_per_post": round(1000 * post_cpu / count, 2),
            "api_cpu_ms_per_healthz": round(1000 * health_cpu / count, 2),
            "steal_share": steal_share,
        }


def run_bulk(
    pg: PrivatePostgres, redis_server: RedisServer, log_dir: Path, *, requests: int, single_jobs: int
) -> dict[str, Any]:
    with bench_stack(pg, redis_server, log_dir) as stack:
        tiers = log_dir / "tiers.toml"
        tiers.write_text(tiers_toml(32))
        stack.start_simulator("--no-limits")
        stack.configure(tiers)
        api_url = stack.start_api()
        jobs = [{"kind": "chat", "request": CHAT_BODY} for _ in range(1000)]
        with httpx.Client(base_url=api_url, timeout=120) as client:
            client.post("/v1/jobs/bulk", json={"jobs": jobs[:100]}).raise_for_status()  # warm-up
        bulk_seconds, accepted = _clients(api_url, 2, requests, lambda c: _post_bulk(c, jobs))
        single_seconds, singles = _clients(api_url, 8, single_jobs, _post_one)
        bulk_rate = accepted / bulk_seconds
        single_rate = singles / single_seconds
        return {
            "bulk_jobs_per_second": round(bulk_rate, 0),
            "bulk_requests": requests,
            "bulk_jobs": accepted,
            "bulk_seconds": round(bulk_seconds, 2),
            "single_jobs_per_second": round(single_rate, 0),
            "single_jobs": singles,
            "ratio": round(bulk_rate / single_rate, 1),
            "stored": stack.count("status = 'queued'"),
        }


def _post_bulk(client: httpx.Client, jobs: list[dict[str, Any]]) -> int:
    response = client.post("/v1/jobs/bulk", json={"jobs": jobs})
    response.raise_for_status()
    return int(response.json()["accepted"])


def _post_one(client: httpx.Client) -> int:
    client.post("/v1/jobs", json={"kind": "chat", "request": CHAT_BODY}).raise_for_status()
    return 1


def _clients(api_url: str, clients: int, calls: int, call: Any) -> tuple[float, int]:
    """``calls`` calls of ``call(client)`` shared by ``clients`` threads; (seconds, total returned)."""
    done: list[int] = []
    lock = threading.Lock()
    share = [calls // clients + (1 if index < calls % clients else 0) for index in range(clients)]

    def work(count: int) -> None:
        total = 0
        with httpx.Client(base_url=api_url, timeout=120) as client:
            for _ in range(count):
                total += call(client)
        with lock:
            done.append(total)

    threads = [threading.Thread(target=work, args=(count,)) for count in share]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(done)
