"""The official ``openai`` SDK, sync and async, against batchery's drop-in OpenAI endpoints with only
``base_url`` and ``api_key`` changed: chat, tools, structured outputs, vision, embeddings, images,
Responses, the SDK's own exceptions, priorities, and the 202 answer when a call outlasts its wait.
Real processes: the API (uvicorn), a Celery worker and the simulator, on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from tests.factories import PNG_1x1
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


class Weather(BaseModel):
    city: str
    celsius: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("dropin")
    # the database poll is slowed far past every wait here: calls are answered by the workers' notices
    env = {"BATCHERY_OPENAI_POLL_SECONDS": "300"}
    with running_stack(
        tmp, postgres_url, redis_url, worker_args=("--concurrency", "16"), extra_env=env
    ) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{stack.api_url}/v1", api_key=stack.api_key, max_retries=0, timeout=60) as sdk:
        yield sdk


def test_chat_answers_the_upstream_body_with_job_and_request_ids(stack: Stack, client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0
    job_id = raw.headers["x-batchery-job-id"]
    assert raw.headers["x-request-id"].startswith("req_")
    with stack.api() as api:
        job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["kind"] == "chat"
    assert job["result"]["id"] == completion.id  # the durable record is the answer given


def test_tools_structured_outputs_vision_embeddings_images_and_responses(
    stack: Stack, client: OpenAI
) -> None:
    tools: list[dict[str, object]] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    called = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="required",
    )
    calls = called.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "get_weather"  # type: ignore[union-attr]

    parsed = client.chat.completions.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "The weather in Paris as JSON"}],
        response_format=Weather,
    )
    assert isinstance(parsed.choices[0].message.parsed, Weather)

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": PNG_1x1}},
                ],
            }
        ],
    )
    assert raw.parse().choices[0].message.content
    with stack.api() as api:
        assert api.get(f"/v1/jobs/{raw.headers['x-batchery-job-id']}").json()["kind"] == "vision"

    embedded = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    assert [item.index for item in embedded.data] == [0, 1] and len(embedded.data[0].embedding) > 0

    image = client.images.generate(model="gpt-image-1", prompt="a red square", size="1024x1024")
    assert image.data and (image.data[0].b64_json or image.data[0].url)

    response = client.responses.parse(model="gpt-4o-mini", input="The weather in Paris", text_format=Weather)
    assert isinstance(response.output_parsed, Weather)

    models = client.models.list()
    assert {"gpt-4o-mini", "text-embedding-3-small"} <= {model.id for model in models}
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


def test_upstream_and_batchery_errors_raise_the_sdks_own_exceptions(stack: Stack, client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], user="sim:status=400"
        )
    assert bad.value.response.headers["x-batchery-job-id"]
    assert isinstance(bad.value.body, dict) and bad.value.body.get("message")  # OpenAI's error object
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model="text-embedding-3-small", input="x", user="sim:status=401")
    with pytest.raises(openai.UnprocessableEntityError) as unknown:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.code == "unknown_model"
    with pytest.raises(openai.UnprocessableEntityError) as streamed:
        client.images.generate(model="gpt-image-1", prompt="a cat", stream=True)
    assert streamed.value.code == "streaming_unsupported"
    with (
        OpenAI(base_url=f"{stack.api_url}/v1", api_key="bk-wrong", max_retries=0) as stranger,
        pytest.raises(openai.AuthenticationError),
    ):
        stranger.embeddings.create(model="text-embedding-3-small", input="x")


def test_a_retried_upstream_failure_is_invisible_and_the_priority_header_is_kept(
    stack: Stack, client: OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        user="sim:status=500;times=1;retry_after=0.1",
        extra_headers={"x-batchery-priority": "7"},
    )
    assert raw.parse().choices[0].message.content
    with stack.api() as api:
        job = api.get(f"/v1/jobs/{raw.headers['x-batchery-job-id']}").json()
    assert job["priority"] == 7 and job["attempts"] == 2
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(
            model="text-embedding-3-small", input="x", extra_headers={"x-batchery-priority": "101"}
        )


def test_a_call_outlasting_its_wait_answers_202_with_the_job_to_poll(stack: Stack) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "user": "sim:latency=3000",
    }
    with stack.api() as api:
        answer = api.post("/v1/chat/completions", json=body, headers={"x-batchery-timeout": "0.5"})
        assert answer.status_code == 202, answer.text
        location = answer.headers["location"]
        assert location == f"/v1/jobs/{answer.json()['id']}"
        assert answer.json()["status"] in ("queued", "running")
        deadline = time.monotonic() + 30
        while (job := api.get(location).json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
    assert job["status"] == "succeeded" and job["result"]["object"] == "chat.completion"


def test_a_disconnected_client_leaves_the_job_to_complete_unless_it_asks_to_cancel(stack: Stack) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "user": "sim:latency=2500",
    }
    ids = {}
    with stack.api() as api:
        for cancel in ("false", "true"):
            with pytest.raises(httpx.ReadTimeout):
                api.post(
                    "/v1/chat/completions",
                    json=body,
                    headers={"x-batchery-cancel-on-disconnect": cancel},
                    timeout=0.8,
                )
            listed = api.get("/v1/jobs", params={"limit": 1}).json()["data"][0]
            ids[cancel] = listed["id"]
        jobs = stack.wait_jobs(api, list(ids.values()), timeout=30)
    assert jobs[0]["status"] == "succeeded" and jobs[0]["result"]["object"] == "chat.completion"
    assert jobs[1]["status"] == "cancelled"


def test_async_clients_wait_concurrently(stack: Stack) -> None:
    async def run() -> list[str]:
        async with AsyncOpenAI(
            base_url=f"{stack.api_url}/v1", api_key=stack.api_key, max_retries=0
        ) as client:
            answers = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}"}]
                    )
                    for i in range(40)
                )
            )
        return [answer.id for answer in answers]

    ids = asyncio.run(run())
    assert len(set(ids)) == 40
