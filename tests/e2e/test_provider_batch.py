"""Deferrable work through the provider's own Batch API, with real processes (API, a Celery worker, beat,
the simulator playing OpenAI's Batch API): a batch in ``auto`` mode completes through a provider batch,
an expired provider batch falls back to live calls for its unanswered lines, and line errors end their
jobs with the provider's error; every line ends exactly once, in OpenAI's output format."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from testbed.processes import Process, batchery
from tests.factories import chat_request
from tests.support.batches import jsonl, request_line
from tests.support.keys import create_key
from tests.support.openai_schema import assert_output_line
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Setup:
    stack: Stack
    client: OpenAI
    jobs: httpx.Client
    tenant: str
    key: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("provider-batches")
    env = {
        "BATCHERY_PROVIDER_BATCH_FLUSH_AGE_SECONDS": "0.5",
        "BATCHERY_PROVIDER_BATCH_POLL_SECONDS": "0.5",
        "BATCHERY_PROVIDER_BATCH_POLL_MAX_SECONDS": "1",
        "BATCHERY_SWEEP_INTERVAL_SECONDS": "1",
    }
    with running_stack(tmp, postgres_url, redis_url, extra_env=env) as stack:
        beat = Process("beat", batchery("beat", "--schedule", str(tmp / "beat-schedule")), stack.env, tmp)
        stack.processes["beat"] = beat
        try:
            tenant = f"pbatch-{uuid.uuid4().hex[:8]}"
            key = create_key(postgres_url, tenant)
            client = OpenAI(base_url=stack.api_url + "/v1", api_key=key, max_retries=0)
            with stack.api(key) as jobs:
                yield Setup(stack, client, jobs, tenant, key)
            client.close()
        finally:
            beat.stop()


def _run(setup: Setup, lines: list[str], timeout: float = 90.0) -> dict[str, Any]:
    uploaded = setup.client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    batch = setup.client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"execution": "auto"},
    )
    deadline = time.monotonic() + timeout
    while (done := setup.client.batches.retrieve(batch.id)).status not in TERMINAL:
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{p.log_tail(20)}" for n, p in setup.stack.processes.items())
            raise TimeoutError(f"batch {batch.id} still {done.status}\n{logs}")
        time.sleep(0.3)
    return done.model_dump(mode="json")


def _lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def _jobs(setup: Setup, outputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each output line's job, by custom_id (a line's ``id`` is ``batch_req_`` + its job id's suffix)."""
    found = {}
    for line in outputs:
        job_id = "job_" + line["id"].removeprefix("batch_req_")
        found[line["custom_id"]] = setup.jobs.get(f"/v1/jobs/{job_id}").json()
    return found


def _sim_stats(setup: Setup) -> dict[str, Any]:
    with setup.stack.sim() as sim:
        return dict(sim.get("/_stats").json())


def test_an_auto_batch_completes_through_one_provider_batch(setup: Setup) -> None:
    before = _sim_stats(setup)
    lines = [request_line(f"q{i}", chat_request(prompt=f"question {i}")) for i in range(20)]
    done = _run(setup, lines)
    assert done["status"] == "completed" and done["request_counts"]["completed"] == 20
    outputs = _lines(setup.client, done["output_file_id"])
    assert sorted(line["custom_id"] for line in outputs) == sorted(f"q{i}" for i in range(20))
    for line in outputs:
        assert_output_line(line)
        assert line["response"]["status_code"] == 200
    jobs = _jobs(setup, outputs)
    assert {job["execution_path"] for job in jobs.values()} == {"provider_batch"}
    assert len({job["provider_batch_id"] for job in jobs.values()}) == 1
    assert all(job["usage"]["total_tokens"] > 0 for job in jobs.values())
    after = _sim_stats(setup)
    assert after["batch_lines"] - before.get("batch_lines", 0) == 20


def test_an_expired_provider_batch_falls_back_to_live_calls_for_its_unanswered_lines(setup: Setup) -> None:
    with setup.stack.sim() as sim:
        assert sim.post("/_control", json={"expire_next_batches": 1}).status_code == 200
    lines = [request_line(f"x{i}", chat_request(prompt=f"expiring {i}")) for i in range(10)]
    done = _run(setup, lines)
    assert done["status"] == "completed" and done["request_counts"] == {
        "total": 10,
        "completed": 10,
        "failed": 0,
    }
    outputs = _lines(setup.client, done["output_file_id"])
    assert sorted(line["custom_id"] for line in outputs) == sorted(f"x{i}" for i in range(10))
    paths = [job["execution_path"] for job in _jobs(setup, outputs).values()]
    assert paths.count("provider_batch") == 5 and paths.count("live") == 5


def test_line_errors_end_their_jobs_with_the_providers_error(setup: Setup) -> None:
    good = [request_line(f"ok{i}", chat_request(prompt=f"fine {i}")) for i in range(4)]
    bad = [request_line(f"bad{i}", chat_request(prompt=f"bad {i}", user="sim:status=400")) for i in range(2)]
    done = _run(setup, good + bad)
    assert done["status"] == "completed" and done["request_counts"] == {
        "total": 6,
        "completed": 4,
        "failed": 2,
    }
    outputs = _lines(setup.client, done["output_file_id"])
    errors = _lines(setup.client, done["error_file_id"])
    assert sorted(line["custom_id"] for line in outputs) == sorted(f"ok{i}" for i in range(4))
    assert sorted(line["custom_id"] for line in errors) == ["bad0", "bad1"]
    for line in errors:
        assert_output_line(line)
        assert line["response"]["status_code"] == 400
    assert {job["execution_path"] for job in _jobs(setup, errors).values()} == {"provider_batch"}


def _live_requests(setup: Setup) -> int:
    """Live calls of this module's tenant that completed (its usage, less the provider batch ones)."""
    total = setup.jobs.get("/v1/usage", params={"tenant": setup.tenant}).json()["total"]
    return int(total["requests"] - total["batch_requests"])


def test_cancelling_the_batch_cancels_its_provider_batch(setup: Setup) -> None:
    live_before = _live_requests(setup)
    with setup.stack.sim() as sim:
        assert sim.post("/_control", json={"batch_processing_seconds": 30}).status_code == 200
        try:
            before = sim.get("/_stats").json()
            lines = [request_line(f"c{i}", chat_request(prompt=f"cancel me {i}")) for i in range(6)]
            uploaded = setup.client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
            batch = setup.client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                extra_body={"execution": "auto"},
            )
            deadline = time.monotonic() + 30
            while sim.get("/_stats").json()["batch"]["batches"]["in_progress"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            setup.client.batches.cancel(batch.id)
            deadline = time.monotonic() + 60
            while (done := setup.client.batches.retrieve(batch.id)).status not in TERMINAL:
                assert time.monotonic() < deadline, done.status
                time.sleep(0.3)
            after = sim.get("/_stats").json()
        finally:
            sim.post("/_control", json={"batch_processing_seconds": 0.5})
    assert done.status == "cancelled"
    assert after["batch"]["batches"]["cancelled"] == before["batch"]["batches"]["cancelled"] + 1
    assert _live_requests(setup) == live_before  # nothing ran live
    assert done.request_counts is not None and done.request_counts.total == 6


def test_the_cli_runs_a_file_through_the_providers_batch_api(setup: Setup, tmp_path: Path) -> None:
    source, results = tmp_path / "in.jsonl", tmp_path / "results.jsonl"
    source.write_bytes(jsonl([request_line(f"k{i}", chat_request(prompt=f"cli {i}")) for i in range(4)]))
    common = ["--url", setup.stack.api_url, "--api-key", setup.key]
    argv = batchery(
        "batch",
        "run",
        str(source),
        "--endpoint",
        "/v1/chat/completions",
        "--execution",
        "auto",
        "--wait",
        "-o",
        str(results),
        *common,
    )
    run = subprocess.run(argv, env=setup.stack.env, capture_output=True, text=True, timeout=90, check=False)
    assert run.returncode == 0, run.stderr
    written = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in written) == ["k0", "k1", "k2", "k3"]
    assert {job["execution_path"] for job in _jobs(setup, written).values()} == {"provider_batch"}
