"""Beyond capacity, a real uvicorn API refuses the excess at once (503 ``overloaded`` with Retry-After),
stores nothing for it, keeps its health probes and its other lane answering, and counts the refusals in
``/metrics``. ``batchery api --workers 2`` serves from two processes whose counters add up.

The limits are tiny here (one request in flight per lane) so that a single held request fills a lane:
a submission whose body is only half sent holds its write slot until its connection closes."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from bench import procstat
from domain.storage.sessions import make_engine
from testbed.processes import (
    ROOT,
    Process,
    base_env,
    batchery,
    free_port,
    spawned_children,
    wait_for,
    wait_http,
)
from tests.support.keys import create_key

pytestmark = pytest.mark.e2e

JOB = {"kind": "chat", "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}


@contextmanager
def api_process(
    tmp_path: Path, database_url: str, redis_url: str, *args: str, **settings: str
) -> Iterator[tuple[str, Process, dict[str, str]]]:
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        BATCHERY_REDIS_PREFIX=f"overload-{uuid.uuid4().hex[:8]}",
        **settings,
    )
    process = Process("api", batchery("api", "--port", str(port), *args), env, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        yield f"http://127.0.0.1:{port}", process, env
    finally:
        process.stop()


@contextmanager
def held_submission(url: str, key: str) -> Iterator[None]:
    """A ``POST /v1/jobs`` that declares 1,000 body bytes and sends 10: it holds a write slot until the
    connection closes."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n"
        "content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"kind": "')
    try:
        yield
    finally:
        sock.close()


def _samples(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _refused(client: httpx.Client, lane: str) -> float:
    return _samples(client).get(("batchery_requests_refused_total", (("lane", lane),)), 0.0)


def _top_refusals(env: dict[str, str]) -> tuple[float, float]:
    """Writes and reads refused in all, as ``batchery top --once`` shows them."""
    done = subprocess.run(
        batchery("top", "--once"),
        env={**env, "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"in all writes (\d+), reads (\d+)", done.stdout)
    assert found is not None, done.stdout
    return float(found.group(1)), float(found.group(2))


def _stored(database_url: str, tenant: str) -> int:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            query = text("SELECT count(*) FROM jobs WHERE tenant_id = :tenant")
            return int(connection.execute(query, {"tenant": tenant}).scalar_one())
    finally:
        engine.dispose()


async def _burst(url: str, key: str, path: str, count: int) -> list[int]:
    """``count`` GETs sent at once, each on its own connection; their statuses."""
    port = int(url.rsplit(":", 1)[1])
    request = f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n\r\n".encode()
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        return int(head.split(b" ", 2)[1])

    return list(await asyncio.gather(*(one(reader, writer) for reader, writer in streams)))


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_the_excess_is_refused_at_once_and_stores_nothing(
    database: str, request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> None:
    database_url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    tenant = f"overload-{uuid.uuid4().hex[:8]}"
    key = create_key(database_url, tenant)
    limits = {"BATCHERY_API_MAX_INFLIGHT_WRITES": "1", "BATCHERY_API_MAX_INFLIGHT_READS": "1"}
    with api_process(tmp_path, database_url, redis_url, **limits) as (url, _, env):
        client = httpx.Client(base_url=url, timeout=10, headers={"authorization": f"Bearer {key}"})
        with client:
            with held_submission(url, key):
                wait_for(
                    lambda: client.post("/v1/jobs", json=JOB).status_code == 503, 10, what="write lane full"
                )
                refusals = [client.post("/v1/jobs", json=JOB) for _ in range(20)]
                assert {r.status_code for r in refusals} == {503}
                refused = refusals[0]
                assert refused.headers["retry-after"] == "1"
                error = refused.json()["error"]
                assert error["code"] == "overloaded"
                assert error["type"] == "server_error"
                assert set(error) == {"code", "message", "param", "type"}
                # the probes, /metrics and the read lane still answer while the write lane is full
                assert client.get("/healthz").status_code == 200
                assert client.get("/readyz").status_code == 200
                assert client.get("/v1/jobs").status_code == 200
                written = _refused(client, "write")
                assert written >= 21
                assert _stored(database_url, tenant) == 0
                assert _top_refusals(env) == (written, 0.0)
            # the held request's connection closed: its slot is free again, and it stored nothing either
            wait_for(lambda: client.post("/v1/jobs", json=JOB).status_code == 202, 10, what="write lane free")
            assert _stored(database_url, tenant) == 1

            statuses = asyncio.run(_burst(url, key, "/v1/jobs?limit=1", 100))
            assert set(statuses) <= {200, 503}
            assert statuses.count(503) > 0
            assert statuses.count(200) > 0
            wait_for(lambda: _refused(client, "read") >= statuses.count(503), 5, what="read refusals counted")


async def _submit_many(url: str, key: str, connections: int, per_connection: int) -> list[int]:
    port = int(url.rsplit(":", 1)[1])
    body = b'{"kind":"chat","request":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}'
    request = (
        f"POST /v1/jobs HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def one_connection() -> list[int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        statuses = []
        for _ in range(per_connection):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            statuses.append(int(head.split(b" ", 2)[1]))
        writer.close()
        return statuses

    results = await asyncio.gather(*(one_connection() for _ in range(connections)))
    return [status for statuses in results for status in statuses]


def test_two_processes_serve_and_their_counters_add_up(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    tenant = f"workers-{uuid.uuid4().hex[:8]}"
    key = create_key(postgres_url, tenant)
    with api_process(tmp_path, postgres_url, redis_url, "--workers", "2") as (url, process, _):
        wait_for(lambda: len(spawned_children(process.popen.pid)) == 2, 20, what="two API processes")
        pids = spawned_children(process.popen.pid)
        for _ in range(2):  # every process answers its first requests
            wait_http(f"{url}/healthz", process)
        before = {pid: procstat.cpu_seconds(pid) for pid in pids}
        statuses = asyncio.run(_submit_many(url, key, connections=32, per_connection=15))
        used = {pid: procstat.cpu_seconds(pid) - before[pid] for pid in pids}
        accepted = statuses.count(202)
        assert accepted + statuses.count(503) == 480
        assert accepted > 0
        assert all(seconds > 0.02 for seconds in used.values()), used  # both processes served
        assert _stored(postgres_url, tenant) == accepted

        def submitted() -> float:
            with httpx.Client(base_url=url, timeout=10) as client:
                samples = _samples(client)
            return sum(v for (name, _), v in samples.items() if name == "batchery_jobs_submitted_total")

        # each process flushes its own counters within a quarter of a second: the figures add up
        wait_for(lambda: submitted() == accepted, 10, what="every process's submissions counted")
