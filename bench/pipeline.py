"""Jobs end to end against the bare-Celery baseline, on one machine with the simulator beside them.

``run_pipeline``: jobs are submitted over HTTP (``POST /v1/jobs/bulk``, closed loop: the submitter keeps
a bounded number outstanding), stored, run by batchery workers and their results stored in
PostgreSQL. ``run_bare``: the same HTTP call made by a bare Celery task (``bench.bare_celery``) that
stores nothing, its queue filled before the workers start. Both measure over a window after a warm-up;
the pipeline also reports CPU per job of the API and the workers, and Redis commands and database
statements per job, counted by the servers.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import bare_celery, procstat
from bench.bench_stack import CHAT_BODY, BenchStack, bench_stack, tiers_toml, usage
from bench.isolated import PrivatePostgres, wait_until
from testbed.processes import base_env
from testbed.redis_server import RedisServer


@dataclass(frozen=True)
class Shape:
    """One measurement's setup."""

    processes: int
    concurrency: int
    latency_ms: int
    seconds: float
    warmup: float


class Submitter(threading.Thread):
    """Keeps about ``outstanding`` jobs submitted but not finished, in bulk requests of ``chunk``."""

    def __init__(self, api_url: str, outstanding: int, chunk: int = 200) -> None:
        super().__init__(name="bench-submitter", daemon=True)
        self.api_url = api_url
        self.outstanding = outstanding
        self.chunk = chunk
        self.submitted = 0
        self.finished = 0
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)

    def run(self) -> None:
        jobs = [{"kind": "chat", "request": CHAT_BODY} for _ in range(self.chunk)]
        with httpx.Client(base_url=self.api_url, timeout=60) as client:
            while not self._stop_event.is_set():
                if self.submitted - self.finished >= self.outstanding:
                    time.sleep(0.02)
                    continue
                response = client.post("/v1/jobs/bulk", json={"jobs": jobs})
                if response.status_code != 202:
                    self.errors += 1
                    time.sleep(0.1)
                    continue
                self.submitted += int(response.json()["accepted"])


def _sim_stats(sim_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{sim_url}/_stats", timeout=10).json())


def run_pipeline(
    pg: PrivatePostgres, redis_server: RedisServer, log_dir: Path, shape: Shape
) -> dict[str, Any]:
    """batchery end to end; returns jobs/s and the per-job costs over the window."""
    with bench_stack(pg, redis_server, log_dir) as stack:
        tiers = log_dir / "tiers.toml"
        tiers.write_text(tiers_toml(shape.concurrency))
        stack.start_simulator("--no-limits", "--latency", f"fixed:{shape.latency_ms}")
        stack.configure(tiers)
        stack.start_api()
        # the deployment the README recommends at this rate: one dispatcher process fills the queues, and
        # the workers spend their CPU on jobs only
        stack.start_dispatcher()
        workers = [
            stack.start_worker(f"worker{i}", shape.concurrency, "--no-dispatch")
            for i in range(shape.processes)
        ]
        # A dispatcher's first round on an empty Redis re-sends every id in the window (it cannot tell a
        # fresh broker from one that lost its queues); submitting before it would count those twice.
        with stack.redis() as client:
            wait_until(lambda: client.exists("batchery:dispatch:epoch"), 30, 0.1)
        idle_rss = [procstat.rss_bytes(worker.popen.pid) for worker in workers]
        names = ["api", "dispatcher", *(f"worker{i}" for i in range(shape.processes))]
        outstanding = max(1000, shape.concurrency * shape.processes * 3)
        submitter = Submitter(stack.api_url, outstanding)
        submitter.start()
        flights: list[int] = []
        peak_rss = list(idle_rss)

        def follow(until: float) -> None:
            while time.monotonic() < until:
                submitter.finished = stack.count("status = 'succeeded'")
                flights.append(int(_sim_stats(stack.sim_url)["in_flight"]))
                for index, worker in enumerate(workers):
                    peak_rss[index] = max(peak_rss[index], procstat.rss_bytes(worker.popen.pid))
                time.sleep(0.25)

        follow(time.monotonic() + shape.warmup)
        flights.clear()
        done_before, submitted_before = stack.count("status = 'succeeded'"), submitter.submitted
        before, monitor_before = stack.snapshot(names), stack.monitor_queries
        steal_before = procstat.steal_seconds()
        follow(time.monotonic() + shape.seconds)
        done_after, submitted_after = stack.count("status = 'succeeded'"), submitter.submitted
        after = stack.snapshot(names)
        steal = procstat.steal_share(steal_before, procstat.steal_seconds(), after.at - before.at)
        spent = usage(before, after, stack.monitor_queries - monitor_before)
        submitter.stop()
        total = submitter.submitted
        drained = wait_until(lambda: stack.count("status = 'succeeded'") >= total, 120, 0.5)
        not_succeeded = stack.count("status <> 'succeeded'")
        finished = done_after - done_before
        submitted = submitted_after - submitted_before
        worker_cpu = sum(spent.cpu[name] for name in names[2:])
        return {
            "jobs_per_second": round(finished / spent.seconds, 1),
            "window_seconds": round(spent.seconds, 1),
            "jobs_finished_in_window": finished,
            "jobs_submitted_in_window": submitted,
            "api_cpu_ms_per_job": round(1000 * spent.cpu["api"] / max(submitted, 1), 2),
            "worker_cpu_ms_per_job": round(1000 * worker_cpu / max(finished, 1), 2),
            "dispatcher_cpu_ms_per_job": round(1000 * spent.cpu["dispatcher"] / max(finished, 1), 2),
            "cpu_share_api": round(spent.cpu["api"] / spent.seconds, 2),
            "cpu_share_workers": round(worker_cpu / spent.seconds, 2),
            "cpu_share_dispatcher": round(spent.cpu["dispatcher"] / spent.seconds, 2),
            "in_flight_median": statistics.median(flights) if flights else 0,
            "worker_rss_idle_mb": [round(rss / 2**20, 1) for rss in idle_rss],
            "worker_rss_peak_mb": [round(rss / 2**20, 1) for rss in peak_rss],
            "all_succeeded": drained and not_succeeded == 0,
            "jobs_total": total,
            "submit_errors": submitter.errors,
            "steal_share": steal,
            **spent.per(finished),
        }


def run_bare(
    pg: PrivatePostgres,
    redis_server: RedisServer,
    log_dir: Path,
    shape: Shape,
    *,
    pool: str = "threads",
    ack_emulation: bool = True,
) -> dict[str, Any]:
    """The bare Celery task: calls per second over the window (from the simulator's own count).
    ``ack_emulation=False`` runs it with kombu's Redis ack emulation off, as batchery's workers run."""
    with bench_stack(pg, redis_server, log_dir) as stack:
        sim_url = stack.start_simulator("--no-limits", "--latency", f"fixed:{shape.latency_ms}")
        per_second = (
            700 if shape.latency_ms == 0 else shape.processes * shape.concurrency * 1000 / shape.latency_ms
        )
        bare_celery.fill(redis_server.url, CHAT_BODY, int(per_second * (shape.warmup + shape.seconds + 10)))
        env = base_env(
            BENCH_REDIS_URL=redis_server.url,
            BENCH_UPSTREAM=f"{sim_url}/v1",
            BENCH_ACK_EMULATION="1" if ack_emulation else "0",
        )
        workers = []
        for index in range(shape.processes):
            argv = [sys.executable, "-m", "bench.bare_celery", pool, str(shape.concurrency)]
            workers.append(stack.start(f"bare{index}", argv, env))
        time.sleep(1.0)
        idle_rss = [procstat.rss_bytes(worker.popen.pid) for worker in workers]
        peak_rss = list(idle_rss)
        flights: list[int] = []
        if not wait_until(lambda: _sim_stats(sim_url)["requests_total"] > 0, 60, 0.2):
            raise RuntimeError("the bare workers made no call:\n" + workers[0].log_tail())

        def follow(until: float) -> None:
            while time.monotonic() < until:
                flights.append(int(_sim_stats(sim_url)["in_flight"]))
                for index, worker in enumerate(workers):
                    peak_rss[index] = max(peak_rss[index], procstat.rss_bytes(worker.popen.pid))
                time.sleep(0.25)

        follow(time.monotonic() + shape.warmup)
        flights.clear()
        names = [f"bare{i}" for i in range(shape.processes)]
        first, cpu_before, t0 = _sim_stats(sim_url)["requests_total"], _cpu(stack, names), time.monotonic()
        steal_before = procstat.steal_seconds()
        follow(time.monotonic() + shape.seconds)
        last, cpu_after, t1 = _sim_stats(sim_url)["requests_total"], _cpu(stack, names), time.monotonic()
        steal = procstat.steal_share(steal_before, procstat.steal_seconds(), t1 - t0)
        calls = int(last) - int(first)
        return {
            "calls_per_second": round(calls / (t1 - t0), 1),
            "window_seconds": round(t1 - t0, 1),
            "cpu_ms_per_call": round(1000 * (cpu_after - cpu_before) / max(calls, 1), 2),
            "in_flight_median": statistics.median(flights) if flights else 0,
            "worker_rss_idle_mb": [round(rss / 2**20, 1) for rss in idle_rss],
            "worker_rss_peak_mb": [round(rss / 2**20, 1) for rss in peak_rss],
            "pool": pool,
            "ack_emulation": ack_emulation,
            "steal_share": steal,
        }


def _cpu(stack: BenchStack, names: list[str]) -> float:
    return sum(procstat.cpu_seconds(stack.processes[name].popen.pid) for name in names)


def memory_per_call(result: dict[str, Any]) -> float:
    """(peak RSS - idle RSS) over the median calls in flight, in KiB."""
    grown = float(sum(result["worker_rss_peak_mb"]) - sum(result["worker_rss_idle_mb"]))
    return round(grown * 1024 / max(float(result["in_flight_median"]), 1.0), 1)
