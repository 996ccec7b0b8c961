"""Private PostgreSQL and Redis servers for benchmarks that count round trips.

Counting needs servers no one else uses: ``pg_stat_statements`` (loaded at server start, so a private
cluster) counts every statement a database runs, BEGIN, COMMIT and pings included, and Redis's
``INFO commandstats`` counts every command a server runs. The private cluster is made with ``initdb``
and the same settings as a stock PostgreSQL 15 (fsync and synchronous commit on, 128 MB of shared
buffers); Redis runs without persistence, as the shared one here does.

PostgreSQL refuses to run as root, so the cluster runs as the ``postgres`` user when started by root.
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis

from testbed.processes import free_port
from testbed.redis_server import RedisServer


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install the PostgreSQL server binaries")
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if getpass.getuser() == "root" else argv


@dataclass
class PrivatePostgres:
    """A throwaway cluster on a free port with ``pg_stat_statements`` loaded."""

    port: int
    data_dir: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return self.url(name)

    def statements(self, database: str) -> dict[str, int]:
        """Calls per normalised statement of one database, as ``pg_stat_statements`` counts them."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT s.query, sum(s.calls)::bigint FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s GROUP BY s.query",
                (database,),
            ).fetchall()
        return {str(query): int(calls) for query, calls in rows}

    def transactions(self, database: str) -> int:
        """Committed plus rolled-back transactions of one database (``pg_stat_database``)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
        return int(row[0]) if row else 0

    def database_bytes(self, database: str, table: str | None = None) -> int:
        sql = "SELECT pg_total_relation_size(%s)" if table else "SELECT pg_database_size(%s)"
        url = self.url(database).replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(sql, (table or database,)).fetchone()
        return int(row[0]) if row else 0


@contextmanager
def private_postgres(max_connections: int = 400) -> Iterator[PrivatePostgres]:
    """Start a private cluster; stopped and deleted on exit."""
    root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data = root / "data"
    os.chmod(root, 0o777)
    if getpass.getuser() == "root":
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections={max_connections} "
        "-c shared_preload_libraries=pg_stat_statements "
        "-c pg_stat_statements.max=10000"
    )
    ctl = _pg_bin("pg_ctl")
    subprocess.run(
        _as_postgres([ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield PrivatePostgres(port, data)
    finally:
        subprocess.run(_as_postgres([ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def private_redis(log_dir: Path) -> Iterator[RedisServer]:
    """A private ``redis-server`` without persistence; stopped on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(log_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def command_counts(client: redis.Redis[Any]) -> dict[str, int]:
    """Calls per command since the server started (``INFO commandstats``), without ``info`` itself."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_info"
    }


def used_memory(client: redis.Redis[Any]) -> int:
    return int(client.info("memory")["used_memory"])


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}


def wait_until(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
