"""Global rate limits under saturation: batchery against plain Celery's per-worker ``rate_limit``.

Both run in one invocation against the same simulator, which enforces the tiers' limits quantized over
1-second windows, with 200-500 ms latency. The workload mixes chat (varied prompt sizes and
``max_tokens``) and embeddings (varied inputs); it is sized so the limits bind for the whole
measurement window (at least two minutes by default). Four worker processes each.

Reported, per model: achieved requests and tokens per minute as a share of the limit, 429s as a share
of upstream calls, and failed jobs.

    python -m bench.ratelimit [--seconds 150] [--only batchery|baseline]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.harness import (
    Services,
    batchery_env,
    machine,
    save,
    services,
    sim_stats,
    start_api,
    start_simulator,
)
from testbed.processes import base_env, batchery

CHAT_MODEL, EMBED_MODEL = "gpt-4o-mini", "text-embedding-3-small"
LIMITS = {CHAT_MODEL: {"rpm": 600, "tpm": 150_000}, EMBED_MODEL: {"rpm": 900, "tpm": 1_000_000}}
WORKERS = 4
WARMUP = 15.0

TIERS = f"""
burst_seconds = 1.0

[tiers.standard]
concurrency = 16
timeout_seconds = 60
max_attempts = 8

[tiers.standard.models."{CHAT_MODEL}"]
rpm = {LIMITS[CHAT_MODEL]["rpm"]}
tpm = {LIMITS[CHAT_MODEL]["tpm"]}

[tiers.embeddings]
concurrency = 16
timeout_seconds = 60
max_attempts = 8

[tiers.embeddings.models."{EMBED_MODEL}"]
rpm = {LIMITS[EMBED_MODEL]["rpm"]}
tpm = {LIMITS[EMBED_MODEL]["tpm"]}
"""

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
]


def text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def workload(rng: random.Random, seconds: float) -> list[tuple[str, dict[str, Any]]]:
    """Enough jobs to keep both models saturated for ``seconds`` (plus warm-up), shuffled."""
    minutes = (seconds + WARMUP + 20) / 60
    chat = [
        (
            "chat",
            {
                "model": CHAT_MODEL,
                "messages": [{"role": "user", "content": text(rng, rng.randint(100, 2000))}],
                "max_tokens": rng.randint(50, 400),
            },
        )
        for _ in range(int(LIMITS[CHAT_MODEL]["rpm"] * minutes * 1.1))
    ]
    embeddings = [
        (
            "embedding",
            {
                "model": EMBED_MODEL,
                "input": [text(rng, rng.randint(20, 400)) for _ in range(rng.randint(1, 4))],
            },
        )
        for _ in range(int(LIMITS[EMBED_MODEL]["rpm"] * minutes * 1.1))
    ]
    jobs = chat + embeddings
    rng.shuffle(jobs)
    return jobs


def measure_window(sim_url: str, seconds: float) -> dict[str, Any]:
    """Counters over [WARMUP, WARMUP + seconds] of saturation, from the simulator's own stats."""
    time.sleep(WARMUP)
    first, t0 = sim_stats(sim_url), time.monotonic()
    time.sleep(seconds)
    last, t1 = sim_stats(sim_url), time.monotonic()
    minutes = (t1 - t0) / 60
    report: dict[str, Any] = {"window_seconds": round(t1 - t0, 1)}
    for model, limits in LIMITS.items():
        a, b = first["by_model"].get(model, {}), last["by_model"].get(model, {})
        admitted = b.get("succeeded", 0) - a.get("succeeded", 0)
        tokens = b.get("tokens_charged", 0) - a.get("tokens_charged", 0)
        calls = b.get("requests", 0) - a.get("requests", 0)
        limited = b.get("rate_limited", 0) - a.get("rate_limited", 0)
        report[model] = {
            "rpm_pct": round(100 * admitted / minutes / limits["rpm"], 1),
            "tpm_pct": round(100 * tokens / minutes / limits["tpm"], 1),
            "upstream_calls": calls,
            "rate_limited_pct": round(100 * limited / max(calls, 1), 2),
        }
    return report


def sim_args(tiers: Path, quantization: str) -> list[str]:
    return ["--tiers", str(tiers), "--latency", "uniform:200:500", "--quantization", quantization]


def run_batchery(
    jobs: list[tuple[str, dict[str, Any]]], seconds: float, tiers: Path, logs: Path, quantization: str
) -> dict[str, Any]:
    with services(logs / f"batchery-{quantization}") as running:
        sim_url = start_simulator(running, *sim_args(tiers, quantization))
        env = batchery_env(running, sim_url, BATCHERY_TIERS_FILE=str(tiers))
        api_url = start_api(running, env)
        ids = submit_all(api_url, jobs)
        for index in range(WORKERS):  # two processes per tier, as one would deploy them
            tier = ("standard", "embeddings")[index % 2]
            argv = batchery("worker", "--tier", tier, "--name", f"{tier}{index}@%h", "--loglevel", "WARNING")
            running.start(f"worker{index}", argv, env)
        report = measure_window(sim_url, seconds)
        report["failed_jobs"] = count_failed(api_url, ids, running)
        return report


def submit_all(api_url: str, jobs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    ids: list[str] = []
    lock = threading.Lock()
    chunks = [jobs[i::8] for i in range(8)]

    def submit(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            for kind, body in chunk:
                response = client.post("/v1/jobs", json={"kind": kind, "request": body})
                response.raise_for_status()
                with lock:
                    ids.append(response.json()["id"])

    threads = [threading.Thread(target=submit, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids


def count_failed(api_url: str, ids: list[str], running: Services) -> int:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        failed = client.get("/v1/jobs", params={"status": "failed", "limit": 100}).json()
    return len(failed["data"])


def run_baseline(
    jobs: list[tuple[str, dict[str, Any]]], seconds: float, tiers: Path, logs: Path, quantization: str
) -> dict[str, Any]:
    with services(logs / f"baseline-{quantization}") as running:
        sim_url = start_simulator(running, *sim_args(tiers, quantization))
        env = base_env(BENCH_REDIS_URL=running.redis_url, BENCH_UPSTREAM=f"{sim_url}/v1")
        chat_rate = f"{LIMITS[CHAT_MODEL]['rpm'] / WORKERS:g}/m"
        embed_rate = f"{LIMITS[EMBED_MODEL]['rpm'] / WORKERS:g}/m"
        from celery import Celery

        sender = Celery("baseline-sender", broker=running.redis_url, set_as_current=False)
        sender.conf.update(task_serializer="json")
        with sender.connection_for_write() as connection:
            producer = sender.amqp.Producer(connection, auto_declare=True)
            for kind, body in jobs:
                sender.send_task(f"baseline.{kind}", args=[body], queue="baseline", producer=producer)
        for index in range(WORKERS):
            argv = [sys.executable, "-m", "bench.celery_baseline", "baseline", chat_rate, embed_rate]
            running.start(f"baseline{index}", argv, env)
        report = measure_window(sim_url, seconds)
        counts = redis.Redis.from_url(running.redis_url).hgetall("baseline:counts")
        report["failed_jobs"] = int(counts.get(b"failed", 0))
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=150.0, help="measurement window (default 150)")
    parser.add_argument("--only", choices=["batchery", "baseline"])
    parser.add_argument(
        "--quantization",
        choices=["bucket", "window", "both"],
        default="both",
        help="how the simulator quantizes its limits: a one-second bucket, fixed 1 s windows, or both runs",
    )
    args = parser.parse_args(argv)
    rng = random.Random(7)
    jobs = workload(rng, args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        tiers = Path(tmp) / "tiers.toml"
        tiers.write_text(TIERS)
        results: dict[str, Any] = {"jobs": len(jobs), "seconds": args.seconds, "limits": LIMITS}
        modes = ["bucket", "window"] if args.quantization == "both" else [args.quantization]
        for mode in modes:
            if args.only != "baseline":
                results[f"batchery/{mode}"] = run_batchery(jobs, args.seconds, tiers, Path(tmp), mode)
                print(f"batchery, {mode}:", results[f"batchery/{mode}"], flush=True)
            if args.only != "batchery":
                results[f"celery rate_limit/{mode}"] = run_baseline(
                    jobs, args.seconds, tiers, Path(tmp), mode
                )
                print(f"celery rate_limit, {mode}:", results[f"celery rate_limit/{mode}"], flush=True)
    print_table(results)
    print("saved", save("ratelimit", results))
    return 0


def print_table(results: dict[str, Any]) -> None:
    print(f"\nmachine: {machine()}")
    header = f"{'system / upstream quantization':<34}{'model':<26}"
    print(header + f"{'RPM %':>8}{'TPM %':>8}{'429 %':>8}{'failed':>8}")
    for system, report in results.items():
        if "/" not in system:
            continue
        for model in LIMITS:
            row = report[model]
            print(
                f"{system:<34}{model:<26}{row['rpm_pct']:>8}{row['tpm_pct']:>8}"
                f"{row['rate_limited_pct']:>8}{report['failed_jobs']:>8}"
            )


if __name__ == "__main__":
    sys.exit(main())
