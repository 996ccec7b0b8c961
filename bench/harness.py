"""Shared pieces of the benchmarks: services, processes, the simulator's counters, and reporting.

Every benchmark prints its figures and the ratio to a baseline measured in the same run, and appends a
JSON record to ``bench/results/`` so ``bench/README.md``'s table can be refreshed from real runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testbed.processes import Process, base_env, batchery, free_port, wait_http
from testbed.services import fresh_postgres_database, private_redis_db

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def save(name: str, record: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"machine": machine(), **record}, indent=2))
    return path


@dataclass
class Services:
    database_url: str
    redis_url: str
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        process = Process(name, argv, env, self.log_dir)
        self.processes.append(process)
        return process


@contextmanager
def services(log_dir: Path) -> Iterator[Services]:
    """A fresh Postgres database (migrated) and a private Redis database; processes stopped on exit."""
    from cli.migrations import upgrade

    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres_database())
        upgrade(database_url)
        redis_url = stack.enter_context(private_redis_db())
        running = Services(database_url, redis_url, log_dir)
        try:
            yield running
        finally:
            for process in reversed(running.processes):
                process.stop()


def start_simulator(running: Services, *args: str) -> str:
    port = free_port()
    argv = batchery("sim", "--port", str(port), *args)
    if _has_taskset():
        argv = ["taskset", "-c", "0", *argv]
    sim = running.start("simulator", argv, base_env())
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/_stats", sim)
    return url


def _has_taskset() -> bool:
    return subprocess.run(["which", "taskset"], capture_output=True, check=False).returncode == 0


def batchery_env(running: Services, sim_url: str, **extra: str) -> dict[str, str]:
    return base_env(
        DATABASE_URL=running.database_url,
        REDIS_URL=running.redis_url,
        OPENAI_BASE_URL=f"{sim_url}/v1",
        OPENAI_API_KEY="sk-bench-provider-key",
        BATCHERY_AUTH_DISABLED="true",
        **extra,
    )


def start_api(running: Services, env: dict[str, str]) -> str:
    port = free_port()
    api = running.start("api", batchery("api", "--port", str(port)), env)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", api)
    return url


def sim_stats(sim_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{sim_url}/_stats", timeout=10).json())
