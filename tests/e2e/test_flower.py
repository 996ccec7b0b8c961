"""Flower, started with ``batchery flower`` next to a running worker, on the same Redis broker: its HTTP
API lists the worker, every tier queue with its length, the tasks by name with the job id, kind and
model as arguments, a failed job's task in FAILURE and a cancelled job's task in REVOKED."""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from config.tiers import DEFAULT_TIERS_FILE, load_tiers
from infra.celery_conf import task_label
from testbed.processes import Process, base_env, batchery, free_port, wait_for, wait_http
from tests.factories import chat_request
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

USER, PASSWORD = "ops", "flower-test-password-3141"
PROVIDER_KEY = "sk-test-e2e-provider-key"
TIER_QUEUES = [tier.queue for tier in load_tiers(DEFAULT_TIERS_FILE).tiers.values()]


@dataclass
class Fleet:
    stack: Stack
    flower: httpx.Client
    broker: redis.Redis[bytes]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Fleet]:
    tmp: Path = tmp_path_factory.mktemp("flower")
    credentials = {"BATCHERY_FLOWER_USER": USER, "BATCHERY_FLOWER_PASSWORD": PASSWORD}
    broker = redis.Redis.from_url(redis_url)
    with running_stack(
        tmp, postgres_url, redis_url, worker_args=("--concurrency", "1"), extra_env=credentials
    ) as stack:
        port = free_port()
        flower = Process("flower", batchery("flower", "--port", str(port)), stack.env, tmp)
        stack.processes["flower"] = flower
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        try:
            wait_http(f"http://127.0.0.1:{port}/healthcheck", flower)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Basic {token}"}, timeout=30
            ) as client:
                yield Fleet(stack, client, broker)
        finally:
            flower.stop()
            with stack.api() as api:  # leave nothing queued for the modules after this one
                for job in api.get("/v1/jobs", params={"status": "queued", "limit": 100}).json()["data"]:
                    api.post(f"/v1/jobs/{job['id']}/cancel")
    broker.delete(*TIER_QUEUES)
    broker.close()


def _workers(fleet: Fleet) -> dict[str, Any]:
    response = fleet.flower.get("/api/workers", params={"refresh": "1"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_flower_needs_the_credentials(fleet: Fleet) -> None:
    response = httpx.get(fleet.flower.base_url.join("/api/workers"), timeout=10)

    assert response.status_code == 401


def test_flower_lists_the_worker_and_the_queues_it_serves(fleet: Fleet) -> None:
    wait_for(lambda: any(name.startswith("worker0@") for name in _workers(fleet)), timeout=30, what="worker")
    workers = _workers(fleet)
    [name] = [name for name in workers if name.startswith("worker0@")]
    served = {queue["name"] for queue in workers[name]["active_queues"]}

    assert set(TIER_QUEUES) <= served
    assert PROVIDER_KEY not in str(workers)


def test_flower_shows_each_tier_queue_with_its_length_and_the_tasks_with_ids_only(fleet: Fleet) -> None:
    _workers(fleet)  # Flower learns the queues from the workers it has inspected
    with fleet.stack.api() as api:
        ids = [
            api.post(
                "/v1/jobs", json={"kind": "chat", "request": chat_request(user="sim:latency=4000")}
            ).json()["id"]
            for _ in range(4)
        ]

    def lengths() -> dict[str, int]:
        response = fleet.flower.get("/api/queues/length")
        assert response.status_code == 200, response.text
        return {queue["name"]: queue["messages"] for queue in response.json()["active_queues"]}

    # One worker thread runs one 4-second job at a time, so the others wait in the tier's Redis list.
    wait_for(lambda: lengths().get("tier.standard", 0) >= 1, timeout=20, what="a waiting message")
    before = fleet.broker.llen("tier.standard")
    shown = lengths()
    after = fleet.broker.llen("tier.standard")

    assert set(TIER_QUEUES) <= set(shown)
    assert after <= shown["tier.standard"] <= before and shown["tier.standard"] >= 1
    assert all(shown[queue] == 0 for queue in TIER_QUEUES if queue != "tier.standard")

    def our_tasks() -> list[dict[str, Any]]:
        tasks = fleet.flower.get("/api/tasks").json().values()
        return [task for task in tasks if any(job_id in str(task.get("args")) for job_id in ids)]

    wait_for(lambda: len(our_tasks()) == len(ids), timeout=20, what="Flower to see the tasks")
    for task in our_tasks():
        assert task["name"] == "batchery.run_job"
        assert task["args"] in {task_label(job_id, "chat", "gpt-4o-mini") for job_id in ids}
        assert task["kwargs"] in ("{}", {})


def test_a_failed_jobs_task_shows_failure_with_the_error(fleet: Fleet) -> None:
    with fleet.stack.api() as api:
        failed = api.post("/v1/jobs", json={"kind": "chat", "request": chat_request(user="sim:status=400")})
        succeeded = api.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
        failed_id, succeeded_id = failed.json()["id"], succeeded.json()["id"]
        jobs = fleet.stack.wait_jobs(api, [failed_id, succeeded_id])
    assert [job["status"] for job in jobs] == ["failed", "succeeded"]

    def task_of(job_id: str) -> dict[str, Any] | None:
        tasks = fleet.flower.get("/api/tasks").json().values()
        done = [t for t in tasks if job_id in str(t.get("args")) and t.get("state") in ("SUCCESS", "FAILURE")]
        return done[0] if done else None

    wait_for(lambda: task_of(failed_id) is not None and task_of(succeeded_id) is not None, 30, what="tasks")
    failure, success = task_of(failed_id), task_of(succeeded_id)
    assert failure is not None and success is not None
    assert failure["state"] == "FAILURE" and success["state"] == "SUCCESS"
    error = jobs[0]["error"]
    assert failure["exception"].startswith("JobFailed(")
    assert f"{error['type']}: {error['message'][:40]}" in failure["exception"]
    assert failed_id in failure["exception"] and "gpt-4o-mini" in failure["exception"]
    assert failure["retries"] == 0


def test_a_cancelled_jobs_task_shows_revoked_whether_it_was_running_or_waiting(fleet: Fleet) -> None:
    with fleet.stack.api() as api:
        # one worker thread: the first job runs for 4 s, the second waits behind it in the queue
        ids = [
            api.post(
                "/v1/jobs", json={"kind": "chat", "request": chat_request(user="sim:latency=4000")}
            ).json()["id"]
            for _ in range(2)
        ]
        wait_for(lambda: api.get(f"/v1/jobs/{ids[0]}").json()["status"] == "running", 30, what="running")
        for job_id in ids:
            assert api.post(f"/v1/jobs/{job_id}/cancel").status_code == 200

    def states() -> dict[str, str]:
        tasks = fleet.flower.get("/api/tasks").json().values()
        return {job_id: t["state"] for t in tasks for job_id in ids if job_id in str(t.get("args"))}

    wait_for(lambda: set(states().values()) == {"REVOKED"} and len(states()) == 2, 30, what="REVOKED")
    with fleet.stack.api() as api:
        assert [api.get(f"/v1/jobs/{job_id}").json()["status"] for job_id in ids] == ["cancelled"] * 2


def _command_lines() -> dict[int, str]:
    """Every process's command line, as ``ps`` shows it."""
    lines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # ended meanwhile
    return lines


def test_flower_is_the_process_that_was_started_a_sigterm_stops_it_and_ps_shows_no_broker_password(
    tmp_path: Path, redis_url: str
) -> None:
    # Redis's default user takes any password (it has none): the URL carries one, as a production URL does
    secret = "broker-password-2718"
    broker = redis_url.replace("redis://", f"redis://default:{secret}@", 1)
    port = free_port()
    env = base_env(REDIS_URL=broker, BATCHERY_FLOWER_USER=USER, BATCHERY_FLOWER_PASSWORD=PASSWORD)
    flower = Process("flower-exec", batchery("flower", "--port", str(port)), env, tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthcheck", flower)
        lines = _command_lines()
        assert "flower" in lines[flower.popen.pid] and "celery" in lines[flower.popen.pid]
        mine = [pid for pid, line in lines.items() if f"--port={port}" in line or "flower-exec" in line]
        assert mine == [flower.popen.pid]  # no second process: the command became Flower
        assert not [line for line in lines.values() if secret in line]
        os.kill(flower.popen.pid, signal.SIGTERM)  # to the process alone, as a supervisor sends it
        flower.popen.wait(timeout=20)
        left = [line for line in _command_lines().values() if f"--port={port}" in line]
        assert left == []
    finally:
        flower.stop()
