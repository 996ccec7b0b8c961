"""A small workload through the API, two worker processes and the simulator: ``/metrics`` moves by
exactly what the jobs did, usage sums equal the job rows, every job line is JSON with its fields,
and ``batchery top --once`` shows every tier with the minute's requests."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.tiers import DEFAULT_TIERS_FILE, load_tiers
from testbed.processes import ROOT, batchery, wait_for
from tests.factories import chat_request, embedding_request, image_request
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

PROVIDER_KEY = "sk-test-e2e-provider-key"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("observability")
    env = {"BATCHERY_LOG_FORMAT": "json", "BATCHERY_REDIS_PREFIX": f"e2e-obs-{uuid.uuid4().hex[:8]}"}
    with running_stack(
        tmp, postgres_url, redis_url, workers=2, worker_args=("--concurrency", "4"), extra_env=env
    ) as running:
        yield running


def _scrape(api: httpx.Client) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _submit(api: httpx.Client, kind: str, request: dict[str, Any]) -> str:
    response = api.post("/v1/jobs", json={"kind": kind, "request": request})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def test_a_workload_moves_every_metric_by_what_the_jobs_did(stack: Stack) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    with stack.api() as api:
        before = _scrape(api)
        slow = [_submit(api, "chat", chat_request(user="sim:latency=300")) for _ in range(8)]
        limited = _submit(api, "chat", chat_request(user="sim:status=429;times=1;retry_after=0.1"))
        refused = _submit(api, "chat", chat_request(user="sim:status=400"))
        embeddings = [_submit(api, "embedding", embedding_request()) for _ in range(2)]
        image = _submit(api, "image", image_request())
        ids = [*slow, limited, refused, *embeddings, image]
        jobs = {job["id"]: job for job in stack.wait_jobs(api, ids)}

        def finished_counted() -> bool:
            samples = _scrape(api)
            return sum(v for (n, _), v in samples.items() if n == "batchery_jobs_finished_total") >= 13

        wait_for(finished_counted, timeout=20, what="every finished job counted")
        after = _scrape(api)
        usage = api.get(
            "/v1/usage", params={"group_by": "model", "tenant": "default", "start": started.isoformat()}
        ).json()

    def delta(name: str, **labels: str) -> float:
        return _get(after, name, **labels) - _get(before, name, **labels)

    assert [jobs[i]["status"] for i in ids] == ["succeeded"] * 9 + ["failed"] + ["succeeded"] * 3
    mini = {"tier": "standard", "model": "gpt-4o-mini"}
    small = {"tier": "embeddings", "model": "text-embedding-3-small"}
    assert delta("batchery_jobs_submitted_total", kind="chat", **mini) == 10
    assert delta("batchery_jobs_submitted_total", kind="embedding", **small) == 2
    assert delta("batchery_jobs_finished_total", kind="chat", status="succeeded", **mini) == 9
    assert delta("batchery_jobs_finished_total", kind="chat", status="failed", **mini) == 1
    assert delta("batchery_jobs_finished_total", kind="embedding", status="succeeded", **small) == 2
    assert (
        delta(
            "batchery_jobs_finished_total",
            kind="image",
            status="succeeded",
            tier="images",
            model="gpt-image-1",
        )
        == 1
    )
    assert delta("batchery_upstream_requests_total", outcome="ok", **mini) == 9
    assert delta("batchery_upstream_requests_total", outcome="429", **mini) == 1
    assert delta("batchery_upstream_requests_total", outcome="4xx", **mini) == 1
    assert delta("batchery_retries_total", reason="429", **mini) == 1
    assert delta("batchery_upstream_latency_seconds_count", **mini) == 11
    assert delta("batchery_limiter_wait_seconds_count", **mini) == 11
    assert delta("batchery_upstream_latency_seconds_bucket", le="0.1", **mini) <= 3  # 8 calls took 300 ms
    assert delta("batchery_images_total", tier="images", model="gpt-image-1") == 1

    succeeded = [job for job in jobs.values() if job["status"] == "succeeded"]
    chats = [job for job in succeeded if job["model"] == "gpt-4o-mini"]
    assert delta("batchery_tokens_total", type="input", **mini) == sum(
        j["usage"]["prompt_tokens"] for j in chats
    )
    assert delta("batchery_tokens_total", type="output", **mini) == sum(
        j["usage"]["completion_tokens"] for j in chats
    )
    assert delta("batchery_tokens_total", type="input", **small) == sum(
        j["usage"]["prompt_tokens"] for j in succeeded if j["kind"] == "embedding"
    )
    for tier in load_tiers(DEFAULT_TIERS_FILE).tiers:
        assert _get(after, "batchery_queue_depth", tier=tier) == 0
        assert _get(after, "batchery_jobs_in_flight", tier=tier) == 0

    by_model = {item["key"]: item for item in usage["data"]}
    assert by_model["gpt-4o-mini"]["requests"] == len(chats)
    assert by_model["gpt-4o-mini"]["input_tokens"] == sum(j["usage"]["prompt_tokens"] for j in chats)
    assert by_model["gpt-4o-mini"]["output_tokens"] == sum(j["usage"]["completion_tokens"] for j in chats)
    assert by_model["gpt-image-1"]["images"] == 1
    metric_cost = sum(v for (n, _), v in after.items() if n == "batchery_cost_usd_total") - sum(
        v for (n, _), v in before.items() if n == "batchery_cost_usd_total"
    )
    assert metric_cost > 0
    assert metric_cost == pytest.approx(usage["total"]["cost_usd"], abs=1e-8)


def test_every_job_line_is_json_with_its_fields_and_both_workers_ran_jobs(stack: Stack) -> None:
    per_worker: Counter[str] = Counter()
    for name in ("worker0", "worker1"):
        for line in _json_lines(stack.processes[name].log_path):
            if line.get("logger") == "batchery.jobs" and line["message"].startswith("job "):
                assert {"job_id", "tier", "model", "attempt", "latency_ms", "outcome"} <= set(line), line
                assert line["job_id"].startswith("job_") and line["latency_ms"] >= 0
                per_worker[name] += 1
    assert per_worker["worker0"] >= 1 and per_worker["worker1"] >= 1, per_worker
    assert sum(per_worker.values()) >= 13
    for process in stack.processes.values():
        assert PROVIDER_KEY not in process.log_path.read_text(errors="replace"), process.name


def test_top_once_shows_every_tier_and_the_minutes_requests(stack: Stack) -> None:
    done = subprocess.run(
        batchery("top", "--once"),
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    rows = {
        cells[0]: cells[1:]
        for cells in ([cell.strip() for cell in line.split("│")[1:-1]] for line in done.stdout.splitlines())
        if cells and cells[0]
    }
    assert set(load_tiers(DEFAULT_TIERS_FILE).tiers) <= set(rows), done.stdout
    queue, _backlog, in_flight, rpm, *_rest = rows["standard"]
    assert (queue, in_flight) == ("0", "0")
    assert int(rpm.split("/")[0]) >= 11  # every call of the first test, all within the last minute
