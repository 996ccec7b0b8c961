"""Throughput near the machine's limit: what a job costs next to a bare Celery task, calls in flight per
worker process, submission latency, bulk submission, and a backlog of a million jobs.

    python -m bench.throughput [--parts abcdef] [--runs 3] [--seconds 15]

Parts (each on private PostgreSQL and Redis servers, ``bench.isolated``, the simulator pinned to core 0):

- ``a`` + ``b``, overhead: a bare Celery task making the same HTTP call to the zero-latency simulator and
  storing nothing (``bench.bare_celery``, threads pool, Celery's defaults), against the full pipeline
  (jobs submitted over HTTP in bulk, stored, run, results stored), same processes and threads, and the
  bare task again with kombu's ack emulation off (as batchery's workers run), alternated ``--runs`` times:
  jobs/s and their ratio (goal >= 60 %), CPU ms per job in the API and the worker, Redis commands and
  database statements and transactions per job, counted by the servers.
- ``c``, in flight: one worker process with 400 threads against a 2 s simulator: jobs/s end to end
  (goal >= 150) and calls in flight (goal >= 300), memory per call in flight; and the bare task at the
  same concurrency with the threads pool and with gevent, to compare the concurrency models.
- ``d``, ``POST /v1/jobs`` at 200 requests/s open loop for 10 s, ``--latency-runs`` times: p50 and p99
  (goal p99 <= 25 ms), medians and each run's, with ``GET /healthz`` at the same rate as the baseline
  and the share of the machine's CPU taken by steal during each run.
- ``e``, ``POST /v1/jobs/bulk``: jobs/s (goal >= 5,000), against single submissions.
- ``f``, a backlog of 1,000,000 queued jobs: Redis and database bytes per queued job, memory bounded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from typing import Any

from bench.backlog_bench import run_backlog
from bench.harness import ROOT, machine, save
from bench.isolated import private_postgres, private_redis
from bench.pipeline import Shape, memory_per_call, run_bare, run_pipeline
from bench.submission_bench import run_bulk, run_latency

LOGS = ROOT / "var" / "bench-throughput"


def overhead(pg: Any, redis_server: Any, args: argparse.Namespace) -> dict[str, Any]:
    shape = Shape(args.processes, args.concurrency, 0, args.seconds, 5.0)
    bare, lean, full = [], [], []
    for run in range(args.runs):
        bare.append(run_bare(pg, redis_server, LOGS / f"bare-{run}", shape))
        full.append(run_pipeline(pg, redis_server, LOGS / f"pipeline-{run}", shape))
        lean.append(run_bare(pg, redis_server, LOGS / f"bare-lean-{run}", shape, ack_emulation=False))
        print(
            f"run {run + 1}: bare {bare[-1]['calls_per_second']}/s, pipeline {full[-1]['jobs_per_second']}/s,"
            f" bare without ack emulation {lean[-1]['calls_per_second']}/s"
        )
    bare_rate = statistics.median(r["calls_per_second"] for r in bare)
    lean_rate = statistics.median(r["calls_per_second"] for r in lean)
    full_rate = statistics.median(r["jobs_per_second"] for r in full)
    middle = sorted(full, key=lambda r: r["jobs_per_second"])[len(full) // 2]
    return {
        "shape": {"worker_processes": args.processes, "threads": args.concurrency, "latency_ms": 0},
        "bare_calls_per_second_median": bare_rate,
        "pipeline_jobs_per_second_median": full_rate,
        "ratio": round(full_rate / bare_rate, 3),
        "ratio_per_run": [
            round(f["jobs_per_second"] / b["calls_per_second"], 3) for b, f in zip(bare, full, strict=True)
        ],
        "bare_without_ack_emulation_calls_per_second_median": lean_rate,
        "ratio_to_bare_without_ack_emulation": round(full_rate / lean_rate, 3),
        "bare_cpu_ms_per_call_median": statistics.median(r["cpu_ms_per_call"] for r in bare),
        "bare_without_ack_emulation_cpu_ms_per_call_median": statistics.median(
            r["cpu_ms_per_call"] for r in lean
        ),
        "api_cpu_ms_per_job_median": statistics.median(r["api_cpu_ms_per_job"] for r in full),
        "worker_cpu_ms_per_job_median": statistics.median(r["worker_cpu_ms_per_job"] for r in full),
        "steal_share_median": statistics.median(r["steal_share"] for r in [*bare, *full, *lean]),
        "median_pipeline_run": middle,
        "runs": {"bare": bare, "pipeline": full, "bare_without_ack_emulation": lean},
    }


def in_flight(pg: Any, redis_server: Any, args: argparse.Namespace) -> dict[str, Any]:
    shape = Shape(1, args.in_flight_threads, 2000, args.seconds, 8.0)
    pipeline = run_pipeline(pg, redis_server, LOGS / "in-flight", shape)
    pipeline["memory_kib_per_call_in_flight"] = memory_per_call(pipeline)
    record: dict[str, Any] = {"shape": shape.__dict__, "pipeline": pipeline}
    pools = ["threads"] + (["gevent"] if importlib.util.find_spec("gevent") else [])
    for pool in pools:
        bare = run_bare(pg, redis_server, LOGS / f"in-flight-bare-{pool}", shape, pool=pool)
        bare["memory_kib_per_call_in_flight"] = memory_per_call(bare)
        record[f"bare_{pool}"] = bare
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="abcdef", help="which parts to run (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="alternated runs of a and b (default 3)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window (default 15)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes in a and b")
    parser.add_argument("--concurrency", type=int, default=32, help="threads per worker in a and b")
    parser.add_argument("--in-flight-threads", type=int, default=400, help="threads of the worker in c")
    parser.add_argument("--latency-runs", type=int, default=3, help="repeats of part d (default 3)")
    parser.add_argument("--backlog", type=int, default=1_000_000, help="queued jobs in f")
    args = parser.parse_args(argv)
    record: dict[str, Any] = {"parts": args.parts}
    with private_postgres() as pg, private_redis(LOGS) as redis_server:
        if "a" in args.parts or "b" in args.parts:
            record["overhead"] = overhead(pg, redis_server, args)
            _show("overhead", record["overhead"], skip=("runs",))
        if "c" in args.parts:
            record["in_flight"] = in_flight(pg, redis_server, args)
            _show("in flight", record["in_flight"])
        if "d" in args.parts:
            record["latency"] = run_latency(
                pg, redis_server, LOGS / "latency", rate=200, seconds=10, runs=args.latency_runs
            )
            _show("POST /v1/jobs at 200/s", record["latency"])
        if "e" in args.parts:
            record["bulk"] = run_bulk(pg, redis_server, LOGS / "bulk", requests=20, single_jobs=2000)
            _show("bulk", record["bulk"])
        if "f" in args.parts:
            record["backlog"] = run_backlog(pg, redis_server, LOGS / "backlog", total=args.backlog)
            _show("backlog", record["backlog"])
    record["goals"] = goals(record)
    _show("goals", record["goals"])
    print(f"machine: {machine()}")
    print("saved", save("throughput", record))
    return 0


def goals(record: dict[str, Any]) -> dict[str, Any]:
    """Each goal of the issue with its measured figure."""
    found: dict[str, Any] = {}
    if "overhead" in record:
        found["pipeline >= 60% of bare Celery"] = record["overhead"]["ratio"] >= 0.6
    if "in_flight" in record:
        run = record["in_flight"]["pipeline"]
        found[">= 150 jobs/s at 2 s from one worker"] = run["jobs_per_second"] >= 150
        found[">= 300 calls in flight"] = run["in_flight_median"] >= 300
    if "latency" in record:
        found["POST /v1/jobs p99 <= 25 ms at 200/s"] = record["latency"]["post_jobs_p99_ms"] <= 25
    if "bulk" in record:
        found["bulk >= 5,000 jobs/s"] = record["bulk"]["bulk_jobs_per_second"] >= 5000
    if "backlog" in record:
        steps = list(record["backlog"]["steps"].values())
        found["Redis holds only the window"] = all(step["tier_queue_length"] <= 64 for step in steps)
    return found


def _show(title: str, value: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    shown = {key: item for key, item in value.items() if key not in skip}
    print(f"\n== {title}\n{json.dumps(shown, indent=1, default=str)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
