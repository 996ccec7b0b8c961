"""A batchery deployment for the throughput benchmarks, on private servers (``bench.isolated``), with
counters read before and after a measurement window: CPU of each process, Redis commands, PostgreSQL
statements and transactions.

Statements the benchmark itself sends (to follow progress) carry the comment ``/* bench */`` and are
left out of the counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import procstat
from bench.isolated import PrivatePostgres, command_counts, delta
from cli.migrations import upgrade
from testbed.processes import Process, base_env, batchery, free_port, wait_for, wait_http
from testbed.redis_server import RedisServer

MODEL = "gpt-4o-mini"
CHAT_BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello."}],
    "max_tokens": 16,
}
MONITOR = "/* bench */"


def tiers_toml(concurrency: int) -> str:
    """One tier serving the chat model, with limits far above anything this machine can reach."""
    return f"""
burst_seconds = 1.0

[tiers.bench]
provider = "openai"
concurrency = {concurrency}
timeout_seconds = 60
max_attempts = 6

[tiers.bench.models."{MODEL}"]
rpm = 100000000
tpm = 100000000000
"""


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]
    redis: dict[str, int]
    statements: dict[str, int]
    transactions: int


@dataclass
class Usage:
    """What happened between two snapshots."""

    seconds: float
    cpu: dict[str, float]
    redis: dict[str, int]
    statements: dict[str, int]
    transactions: int

    def per(self, jobs: int) -> dict[str, Any]:
        """Counts per job, rounded for the report."""
        jobs = max(jobs, 1)
        return {
            "redis_commands_per_job": round(sum(self.redis.values()) / jobs, 2),
            "redis_by_command": {k: round(v / jobs, 2) for k, v in sorted(self.redis.items())},
            "db_statements_per_job": round(sum(self.statements.values()) / jobs, 2),
            "db_transactions_per_job": round(self.transactions / jobs, 2),
            "db_by_statement": {
                _short(k): round(v / jobs, 3)
                for k, v in sorted(self.statements.items(), key=lambda item: -item[1])
                if v / jobs >= 0.005
            },
        }


def _short(query: str) -> str:
    text = " ".join(query.split())
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass
class BenchStack:
    pg: PrivatePostgres
    database: str
    database_url: str
    redis_server: RedisServer
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    sim_url: str = ""
    api_url: str = ""
    processes: dict[str, Process] = field(default_factory=dict)
    monitor_queries: int = 0
    """Transactions the benchmark ran itself (``count``), to leave out of the database's figure."""

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        process = Process(name, argv, env or self.env, self.log_dir)
        self.processes[name] = process
        return process

    def start_simulator(self, *args: str) -> str:
        port = free_port()
        sim = self.start("simulator", ["taskset", "-c", "0", *batchery("sim", "--port", str(port), *args)])
        self.sim_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.sim_url}/_stats", sim)
        return self.sim_url

    def configure(self, tiers_file: Path, **extra: str) -> None:
        self.env = base_env(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_server.url,
            OPENAI_BASE_URL=f"{self.sim_url}/v1",
            OPENAI_API_KEY="sk-bench-provider-key",
            BATCHERY_AUTH_DISABLED="true",
            BATCHERY_TIERS_FILE=str(tiers_file),
            **extra,
        )

    def start_api(self, *args: str) -> str:
        port = free_port()
        api = self.start("api", batchery("api", "--port", str(port), *args))
        self.api_url = f"http://127.0.0.1:{port}"
        wait_http(f"{self.api_url}/healthz", api)
        return self.api_url

    def start_worker(self, name: str, concurrency: int, *extra: str) -> Process:
        argv = batchery(
            "worker", "--tier", "bench", "--concurrency", str(concurrency), "--name", f"{name}@%h"
        )
        worker = self.start(name, [*argv, *extra])
        wait_for(lambda: "ready" in worker.log_tail(400) or not worker.alive(), 60, what=f"{name} ready")
        if not worker.alive():
            raise RuntimeError(f"{name} exited:\n{worker.log_tail()}")
        return worker

    def start_dispatcher(self) -> Process:
        """A ``batchery dispatcher`` process, for workers started with ``--no-dispatch``."""
        return self.start("dispatcher", batchery("dispatcher"))

    def redis(self) -> redis.Redis[Any]:
        return self.redis_server.client()

    def count(self, where: str) -> int:
        """Jobs matching ``where`` (a statement of the benchmark's own, left out of the counts)."""
        with psycopg.connect(self.database_url.replace("+psycopg", ""), autocommit=True) as conn:
            row = conn.execute(f"{MONITOR} SELECT count(*) FROM jobs WHERE {where}").fetchone()
        self.monitor_queries += 1
        return int(row[0]) if row else 0

    def snapshot(self, names: list[str]) -> Snapshot:
        cpu = {name: procstat.cpu_seconds(self.processes[name].popen.pid) for name in names}
        with self.redis() as client:
            commands = command_counts(client)
        statements = {
            query: calls for query, calls in self.pg.statements(self.database).items() if MONITOR not in query
        }
        return Snapshot(time.monotonic(), cpu, commands, statements, self.pg.transactions(self.database))

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()


def usage(before: Snapshot, after: Snapshot, monitor_transactions: int = 0) -> Usage:
    """The difference of two snapshots; ``monitor_transactions`` of the benchmark's own are left out."""
    return Usage(
        seconds=after.at - before.at,
        cpu={name: after.cpu[name] - before.cpu[name] for name in after.cpu},
        redis=delta(after.redis, before.redis),
        statements=delta(after.statements, before.statements),
        transactions=after.transactions - before.transactions - monitor_transactions,
    )


@contextmanager
def bench_stack(pg: PrivatePostgres, redis_server: RedisServer, log_dir: Path) -> Iterator[BenchStack]:
    """A fresh, migrated database and an emptied Redis; every process stopped on exit."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name)
    upgrade(url)
    with redis_server.client() as client:
        client.flushall()
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(pg, name, url, redis_server, log_dir)
    try:
        yield stack
    finally:
        stack.stop_all()
