"""No secret leaks: a representative workload runs through real processes with DEBUG logging (jobs of
every kind, an upstream failure, a retried call, signed webhooks, refused keys, the usage report),
then every process log, every row of every table and every Redis key and value are searched for the
test's secrets: the provider key, the batchery API key and the webhook signing secret. None is found.

Each secret is shown to be in use first (the simulator demands the provider key, the receiver checks
the webhook signatures, the API demands the batchery key), so finding nothing means something.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from standardwebhooks import Webhook

from testbed.processes import Process, batchery, free_port, wait_for, wait_http
from tests.factories import REQUESTS, chat_request
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

PROVIDER_KEY = "sk-test-e2e-provider-key"  # the key running_stack gives the workers
WEBHOOK_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Run:
    stack: Stack
    key: str
    receiver_url: str
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Run]:
    tmp: Path = tmp_path_factory.mktemp("hygiene")
    env = {
        "BATCHERY_LOG_LEVEL": "DEBUG",
        "BATCHERY_WEBHOOK_SECRETS": WEBHOOK_SECRET,
        "BATCHERY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
        "BATCHERY_WEBHOOK_RETRY_SCHEDULE": "0,1s",
        "BATCHERY_WEBHOOK_POLL_INTERVAL_SECONDS": "0.25",
    }
    sim_args = ("--no-limits", "--require-key", PROVIDER_KEY)
    port = free_port()
    with (
        running_stack(tmp, postgres_url, redis_url, sim_args=sim_args, extra_env=env) as stack,
        ExitStack() as stop,
    ):
        receiver_argv = [sys.executable, "-m", "tests.support.webhook_receiver", "--port", str(port)]
        receiver = Process("receiver", receiver_argv, stack.env, tmp)
        stop.callback(receiver.stop)
        stack.processes["receiver"] = receiver
        wait_http(f"http://127.0.0.1:{port}/_received", receiver)
        created = subprocess.run(
            batchery("keys", "create", "--tenant", "hygiene", "--scopes", "all"),
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        key = created.stdout.strip()  # printed once, on stdout; its log (stderr) is searched below
        (tmp / "keys-create.log").write_text(created.stderr)
        secrets = {"provider key": PROVIDER_KEY, "batchery key": key, "webhook secret": WEBHOOK_SECRET}
        secrets |= {"batchery key's secret part": key.rsplit("_", 1)[1], "webhook key": WEBHOOK_SECRET[6:]}
        yield Run(stack, key, f"http://127.0.0.1:{port}", secrets)


def _workload(run: Run) -> list[dict[str, Any]]:
    hook = f"{run.receiver_url}/hook"
    bodies: list[dict[str, Any]] = [
        {"kind": kind, "request": REQUESTS[kind](), "webhook_url": hook} for kind in REQUESTS
    ]
    bodies.append({"kind": "chat", "request": chat_request(user="sim:status=400"), "webhook_url": hook})
    bodies.append({"kind": "chat", "request": chat_request(user="sim:status=500;times=1", prompt="retry")})
    with run.stack.api(run.key) as api:
        ids = []
        for body in bodies:
            response = api.post("/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        jobs = run.stack.wait_jobs(api, ids)
        assert api.get("/v1/usage").status_code == 200
        assert api.get("/v1/jobs", params={"limit": 20}).status_code == 200
        wait_for(lambda: len(_received(run)) > len(REQUESTS), timeout=30, what="the webhooks")
    wrong_key = run.key[:-1] + ("y" if run.key.endswith("x") else "x")  # never the key itself
    with run.stack.api(wrong_key) as wrong, run.stack.api("") as anonymous:
        assert wrong.get("/v1/jobs").status_code == 401
        assert anonymous.get("/v1/jobs").status_code == 401
    return jobs


def _received(run: Run) -> list[dict[str, Any]]:
    return list(httpx.get(f"{run.receiver_url}/_received", timeout=10).json())


def _database_text(database_url: str) -> str:
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        rows = [
            str(row[0])
            for table in tables
            for row in connection.execute(f'SELECT CAST(t AS text) FROM "{table}" AS t')
        ]
    assert "api_keys" in tables and "jobs" in tables
    return "\n".join(rows)


def _redis_dump(redis_url: str) -> bytes:
    client = redis.Redis.from_url(redis_url)
    parts: list[bytes] = []
    try:
        for name in client.scan_iter(count=1000):
            parts.append(name)
            kind = client.type(name)
            if kind == b"string":
                parts.append(client.get(name) or b"")
            elif kind == b"list":
                parts.extend(client.lrange(name, 0, -1))
            elif kind == b"hash":
                parts.extend(item for pair in client.hgetall(name).items() for item in pair)
            elif kind == b"set":
                parts.extend(client.smembers(name))
            elif kind == b"zset":
                parts.extend(client.zrange(name, 0, -1))
            elif kind == b"stream":
                parts.extend(str(entry).encode() for entry in client.xrange(name))
    finally:
        client.close()
    return b"\n".join(parts)


def test_no_secret_reaches_logs_database_or_redis(run: Run, postgres_url: str, redis_url: str) -> None:
    jobs = _workload(run)
    statuses = [job["status"] for job in jobs]
    assert statuses == ["succeeded"] * len(REQUESTS) + ["failed", "succeeded"], statuses
    assert jobs[-1]["attempts"] == 2 and jobs[-2]["error"]["status_code"] == 400

    received = _received(run)  # the webhook secret was in use: every delivery verifies with it
    for item in received:
        Webhook(WEBHOOK_SECRET).verify(item["body"], item["headers"])
    logs = {path.name: path.read_text(errors="replace") for path in run.stack.log_dir.glob("*.log")}
    assert {"api.log", "worker0.log", "simulator.log", "keys-create.log"} <= set(logs)
    assert "DEBUG" in logs["api.log"] and "DEBUG" in logs["worker0.log"], "DEBUG logging was not on"

    places = {f"log {name}": text for name, text in logs.items()}
    places["database"] = _database_text(postgres_url)
    places["redis"] = _redis_dump(redis_url).decode("utf-8", errors="replace")
    assert run.stack.processes["worker0"].alive() and "job_" in places["redis"] + places["database"]
    leaks = [
        f"the {what} is in the {place}"
        for what, secret in run.secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert not leaks, leaks
