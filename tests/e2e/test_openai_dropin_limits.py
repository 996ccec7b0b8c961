"""The drop-in OpenAI endpoints under a provider's rate limit, and with the completion notices lost: twenty
concurrent SDK clients against a simulator limited to 300 requests a minute get every answer and no
429 (the global limiter paces the calls), and a call whose notice never comes is answered by the API's
database poll. Real processes: the API, Celery workers and the simulator."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from testbed.processes import Process, batchery
from tests.support.keys import create_key
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

TIERS = """
burst_seconds = 1.0

[tiers.standard]
concurrency = 16
timeout_seconds = 30
max_attempts = 8

[tiers.standard.models."gpt-4o-mini"]
rpm = 300
tpm = 10000000
"""
CLIENTS = 20
CALLS_EACH = 2


def test_twenty_sdk_clients_stay_within_300_rpm_and_see_no_429(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(TIERS)
    sim_args = ("--tiers", str(tiers), "--quantization", "bucket", "--latency", "fixed:20")
    env = {"BATCHERY_TIERS_FILE": str(tiers)}

    async def client_calls(base_url: str, key: str, number: int) -> list[str]:
        async with AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120) as client:
            answers = [
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"client {number} call {i}"}]
                )
                for i in range(CALLS_EACH)
            ]
        return [answer.id for answer in answers]

    async def all_clients(base_url: str, key: str) -> list[list[str]]:
        return await asyncio.gather(*(client_calls(base_url, key, n) for n in range(CLIENTS)))

    with (
        running_stack(tmp_path, postgres_url, redis_url, sim_args=sim_args, extra_env=env) as stack,
        stack.sim() as sim,
    ):
        sim.post("/_stats/reset")
        answered = asyncio.run(all_clients(f"{stack.api_url}/v1", stack.api_key))  # a 429 would raise
        stats = sim.get("/_stats").json()
        direct = asyncio.run(direct_burst(f"{stack.sim_url}/v1"))
    assert sum(len(ids) for ids in answered) == CLIENTS * CALLS_EACH
    # paced by the limiter: at most a rare 429 at the provider, retried out of the clients' sight
    assert stats["rate_limited"] <= 2, stats
    assert stats["requests_total"] == CLIENTS * CALLS_EACH + stats["rate_limited"], stats
    assert direct.count(429) >= CLIENTS // 2, direct  # the same clients unpaced: mostly refused


async def direct_burst(sim_url: str) -> list[int]:
    """The twenty clients at once, straight at the simulator: the statuses they get."""
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": "Bearer sk-test-e2e-provider-key"}
    async with httpx.AsyncClient(base_url=sim_url, headers=headers, timeout=30) as client:
        answers = await asyncio.gather(*(client.post("/chat/completions", json=body) for _ in range(CLIENTS)))
    return [answer.status_code for answer in answers]


def test_a_full_queue_is_a_429_with_retry_after_and_a_lost_notice_is_answered_by_the_poll(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {"BATCHERY_OPENAI_POLL_SECONDS": "0.5", "BATCHERY_MAX_QUEUED_JOBS_PER_TENANT": "2"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    key = create_key(postgres_url, tenant=f"quota-{uuid.uuid4().hex[:8]}")  # its own queue: empty
    with running_stack(tmp_path, postgres_url, redis_url, workers=0, extra_env=env) as stack:
        with (
            OpenAI(base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0, timeout=60) as client,
            stack.api(key) as api,
        ):
            # no worker yet: two calls outlast their wait and stay queued, the third finds the queue full
            held = [
                api.post("/v1/chat/completions", json=body, headers={"x-batchery-timeout": "0.2"})
                for _ in "ab"
            ]
            assert [answer.status_code for answer in held] == [202, 202]
            with pytest.raises(openai.RateLimitError) as full:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            assert int(full.value.response.headers["retry-after"]) >= 1
            assert full.value.code == "tenant_queue_full"

            # the worker announces on another prefix's channel: the API never hears a notice
            worker_env = {**stack.env, "BATCHERY_REDIS_PREFIX": "elsewhere"}
            worker = Process("worker0", batchery("worker", "--name", "worker0@%h"), worker_env, tmp_path)
            stack.processes["worker0"] = worker
            stack.wait_jobs(api, [answer.json()["id"] for answer in held], timeout=60)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-batchery-timeout": "45"},
            )
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], user="sim:status=400"
                )
        assert raw.status_code == 200
        assert raw.parse().choices[0].message.content
        assert "x-request-id" not in raw.headers  # kept under the worker's prefix, out of the API's sight
