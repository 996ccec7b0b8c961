"""Leases with the default settings: how long a dead worker's jobs take to come back, and what the
heartbeat costs a worker.

- **Recovery after SIGKILL** (median of ``--runs``): two workers of 100 threads, 200 chat jobs at 2 s
  simulator latency; once the calls are in flight, one worker is killed with SIGKILL. The figure is the
  time from the kill to the last job's ``finished_at``. Its floor is the lease (30 s after the dead
  worker's last renewal, which was at most 5 s before the kill), plus a dispatcher round and a call.
- **Worker CPU per job, heartbeat off and on** (rounds alternated, median of each): one worker of 300
  threads, 300 calls in flight at 3 s latency, 1,500 jobs. "Off" is the baseline of the same run: a
  lease and a heartbeat interval so long that no renewal happens during the measurement. The cost of
  the heartbeat is the difference, which this machine's noise can hide: so the heartbeat thread's own
  CPU (the scheduler's count for that thread, ``/proc/<pid>/task/<tid>/schedstat``) is also reported,
  as a share of the worker's.

    python -m bench.lease_recovery [--runs 3] [--rounds 2]

It uses the local PostgreSQL (a database of its own, dropped at the end) and a free logical database
of the local Redis, and starts the simulator, the API and the workers as ``batchery`` processes.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from bench import procstat
from cli.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS = ("127.0.0.1", 6379)
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


class Proc:
    """A ``batchery`` process in a session of its own, its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                env=dict(env),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signum)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def wait_ready(self, timeout: float = 90.0) -> None:
        _wait(lambda: "ready" in self.log.read_text(errors="replace"), timeout, f"{self.name} ready")


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _database() -> Iterator[str]:
    name = f"bench_lease_{uuid.uuid4().hex[:10]}"
    admin = SERVER.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _redis_db() -> Iterator[str]:
    """A logical database no test session uses (the test suite's own lock keys), flushed around use."""
    admin = redis.Redis(host=REDIS[0], port=REDIS[1], db=0)
    token = uuid.uuid4().hex
    for index in range(1, 16):
        lock = f"batchery-test-db-lock:{index}"
        if admin.set(lock, token, nx=True, ex=3600):
            break
    else:
        raise RuntimeError("every Redis logical database 1-15 is in use")
    client = redis.Redis(host=REDIS[0], port=REDIS[1], db=index)
    client.flushdb()
    try:
        yield f"redis://{REDIS[0]}:{REDIS[1]}/{index}"
    finally:
        client.flushdb()
        if admin.get(lock) == token.encode():
            admin.delete(lock)


def _rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        return list(connection.execute(sql, params).fetchall())


class Bench:
    def __init__(self, stop: ExitStack, log_dir: Path, database: str, redis_url: str, threads: int) -> None:
        self.stop = stop
        self.log_dir = log_dir
        self.database = database
        tiers = log_dir / f"tiers-{threads}.toml"
        tiers.write_text(
            f"[tiers.standard]\nconcurrency = {threads}\ntimeout_seconds = 60\n"
            '[tiers.standard.models."gpt-4o-mini"]\nrpm = 10000000\ntpm = 10000000000\n'
        )
        self.sim_port, self.api_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHERY_", "OPENAI_"))}
        self.env = {
            **env,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.sim_port}/v1",
            "OPENAI_API_KEY": "sk-bench-provider-key",
            "BATCHERY_TIERS_FILE": str(tiers),
            "BATCHERY_AUTH_DISABLED": "true",
            "BATCHERY_RESEND_AFTER_SECONDS": "8",
        }
        self.count = 0

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        process = Proc(name, args, {**self.env, **(env or {})}, self.log_dir)
        self.stop.callback(process.stop)
        return process

    def services(self, latency_ms: int) -> None:
        sim = self.start(
            "sim", "sim", "--port", str(self.sim_port), "--no-limits", "--latency", f"fixed:{latency_ms}"
        )
        api = self.start("api", "api", "--port", str(self.api_port))
        for url, process in (
            (f"http://127.0.0.1:{self.sim_port}/_stats", sim),
            (f"http://127.0.0.1:{self.api_port}/healthz", api),
        ):
            _wait(lambda u=url: _answers(u), 60, process.name)

    def submit(self, count: int) -> list[str]:
        ids: list[str] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60) as api:
            while len(ids) < count:
                size = min(1000, count - len(ids))
                jobs = [
                    {"kind": "chat", "request": {**BODY, "user": f"job {self.count + i}"}}
                    for i in range(size)
                ]
                self.count += size
                response = api.post("/v1/jobs/bulk", json={"jobs": jobs})
                response.raise_for_status()
                ids += [str(item["id"]) for item in response.json()["data"]]
        return ids

    def in_flight(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.sim_port}/_stats", timeout=10).json()["in_flight"])

    def done(self, ids: list[str]) -> int:
        sql = "SELECT count(*) FROM jobs WHERE id = ANY(%(ids)s) AND status = 'succeeded'"
        return int(_rows(self.database, sql, ids=ids)[0][0])

    def last_finished(self, ids: list[str]) -> Any:
        return _rows(self.database, "SELECT max(finished_at) FROM jobs WHERE id = ANY(%(ids)s)", ids=ids)[0][
            0
        ]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def recovery_run(bench: Bench, run: int) -> float:
    """Seconds from a SIGKILL to the last of 200 jobs finished (two workers of 100 threads)."""
    workers = [
        bench.start(f"worker{run}-{i}", "worker", "--concurrency", "100", "--name", f"w{run}{i}@%h")
        for i in range(2)
    ]
    for worker in workers:
        worker.wait_ready()
    time.sleep(2)  # the first dispatcher round marks the broker
    ids = bench.submit(200)
    _wait(lambda: bench.in_flight() >= 190, 30, "calls in flight", interval=0.05)
    workers[0].kill(signal.SIGKILL)
    killed = time.time()
    _wait(lambda: bench.done(ids) == len(ids), 120, "every job done", interval=0.5)
    seconds = bench.last_finished(ids).timestamp() - killed
    workers[1].stop()
    return float(seconds)


_HEARTBEAT_THREAD = re.compile(r"heartbeat: every [0-9.]+s on thread (\d+)")


def _thread_ns(pid: int, tid: int) -> int:
    """CPU time a thread has run, in nanoseconds (the scheduler's own count)."""
    return int((Path(f"/proc/{pid}/task/{tid}/schedstat")).read_text().split()[0])


def cpu_round(bench: Bench, name: str, env: Mapping[str, str]) -> tuple[float, float]:
    """Worker CPU seconds per job (1,500 jobs through one worker of 300 threads), and the share of the
    worker's CPU its heartbeat thread used meanwhile."""
    worker = bench.start(name, "worker", "--concurrency", "300", "--name", f"{name}@%h", env=env)
    worker.wait_ready()
    time.sleep(2)
    found = _HEARTBEAT_THREAD.search(worker.log.read_text(errors="replace"))
    assert found is not None, "the worker logs its heartbeat thread"
    pid, tid = worker.popen.pid, int(found.group(1))
    before, beat_before = procstat.cpu_seconds(pid), _thread_ns(pid, tid)
    ids = bench.submit(1500)
    _wait(lambda: bench.done(ids) == len(ids), 300, "every job done", interval=0.5)
    used = procstat.cpu_seconds(pid) - before
    beat = (_thread_ns(pid, tid) - beat_before) / 1e9
    worker.stop()
    return used / len(ids), beat / used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", default="recovery,cpu", help="recovery, cpu, or both (comma-separated)")
    args = parser.parse_args(argv)
    no_heartbeat = {"BATCHERY_LEASE_SECONDS": "100000", "BATCHERY_HEARTBEAT_SECONDS": "50000"}
    with tempfile.TemporaryDirectory(prefix="bench-lease-") as tmp, ExitStack() as stop:
        log_dir = Path(tmp)
        database = stop.enter_context(_database())
        redis_url = stop.enter_context(_redis_db())
        parts = set(args.parts.split(","))
        if "recovery" in parts:
            with ExitStack() as recovery:
                bench = Bench(recovery, log_dir, database, redis_url, threads=100)
                bench.services(latency_ms=2000)
                recoveries = [recovery_run(bench, run) for run in range(args.runs)]
            print(
                f"recovery after SIGKILL, default lease: {', '.join(f'{s:.1f}' for s in recoveries)} s",
                end="",
            )
            print(f"; median {statistics.median(recoveries):.1f} s", flush=True)
        if "cpu" not in parts:
            return 0
        with ExitStack() as cpu:
            bench = Bench(cpu, log_dir, database, redis_url, threads=300)
            bench.services(latency_ms=3000)
            off: list[float] = []
            on: list[float] = []
            shares: list[float] = []
            for index in range(args.rounds):
                off.append(cpu_round(bench, f"off{index}", no_heartbeat)[0])
                per_job, share = cpu_round(bench, f"on{index}", {})
                on.append(per_job)
                shares.append(share)
        base, beat = statistics.median(off), statistics.median(on)
        print(f"worker CPU per job, heartbeat off (baseline): {', '.join(f'{v * 1e3:.3f}' for v in off)} ms")
        print(f"worker CPU per job, heartbeat on (defaults):  {', '.join(f'{v * 1e3:.3f}' for v in on)} ms")
        print(f"medians: {base * 1e3:.3f} -> {beat * 1e3:.3f} ms per job ({beat / base - 1:+.1%})")
        print(f"the heartbeat thread's share of the worker's CPU: {', '.join(f'{v:.3%}' for v in shares)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
