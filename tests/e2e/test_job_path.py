"""A job of each kind travels over HTTP, through a tier queue and a real Celery worker, to the
simulator and back; the stored usage equals what the simulator reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import REQUESTS
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("stack")
    with running_stack(tmp, postgres_url, redis_url) as running:
        yield running


def test_one_job_of_each_kind_succeeds_with_the_simulators_usage(stack: Stack) -> None:
    with stack.api() as api, stack.sim() as sim:
        sim.post("/_stats/reset")
        ids = [
            api.post("/v1/jobs", json={"kind": kind, "request": REQUESTS[kind]()}).json()["id"]
            for kind in ("chat", "vision", "embedding", "image")
        ]
        jobs = stack.wait_jobs(api, ids)
        stats = sim.get("/_stats").json()
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1 and job["finished_at"] is not None
        assert job["result"] is not None
    chat, vision, embedding, image = jobs
    for job in (chat, vision):
        reported = job["result"]["usage"]
        assert job["usage"]["prompt_tokens"] == reported["prompt_tokens"] > 0
        assert job["usage"]["completion_tokens"] == reported["completion_tokens"] > 0
        assert job["usage"]["total_tokens"] == reported["total_tokens"]
    assert embedding["usage"]["prompt_tokens"] == embedding["result"]["usage"]["prompt_tokens"] > 0
    assert len(embedding["result"]["data"][0]["embedding"]) > 0
    assert image["usage"]["images"] == len(image["result"]["data"]) == 1
    assert image["usage"]["total_tokens"] == image["result"]["usage"]["total_tokens"]
    assert stats["requests_total"] == 4, stats
    for job in jobs:
        reported = stats["by_model"][job["model"]]
        assert reported["requests"] == 1
        assert job["usage"]["prompt_tokens"] == reported["prompt_tokens"], (job["kind"], reported)
        assert job["usage"]["total_tokens"] == reported["total_tokens"], (job["kind"], reported)


def test_finished_jobs_are_listed_by_status(stack: Stack) -> None:
    with stack.api() as api:
        kinds = {
            api.post("/v1/jobs", json={"kind": kind, "request": REQUESTS[kind]()}).json()["id"]: kind
            for kind in ("chat", "vision", "embedding", "image")
        }
        stack.wait_jobs(api, list(kinds))
        succeeded = api.get("/v1/jobs", params={"status": "succeeded", "limit": 100}).json()["data"]
        queued = api.get("/v1/jobs", params={"status": "queued", "limit": 100}).json()["data"]
    listed = {job["id"]: job["kind"] for job in succeeded if job["id"] in kinds}
    assert listed == kinds  # every one listed, each with its kind
    assert all(job["status"] == "succeeded" for job in succeeded)
    assert not {job["id"] for job in queued} & kinds.keys()
