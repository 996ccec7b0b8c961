"""Streaming through batchery, with real processes (the API under uvicorn, a Celery worker, the simulator
streaming SSE) on PostgreSQL and Redis:

- a ``stream: true`` job submitted to ``POST /v1/jobs`` is called streamed and stored as the
  non-streamed object, with the upstream's exact usage, and its record says so;
- the official SDK's ``stream=True`` against the drop-in endpoints (chat sync and async, tools,
  Responses) gets the upstream's chunks, and the job behind the call stores the aggregate;
- a retry before the first byte is invisible, an upstream error before it is the SDK's own exception,
  and a failure after it ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.factories import chat_request
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("streaming")
    with running_stack(tmp, postgres_url, redis_url, worker_args=("--concurrency", "8")) as running:
        yield running


@pytest.fixture
def client(stack: Stack) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{stack.api_url}/v1", api_key=stack.api_key, max_retries=0, timeout=60) as sdk:
        yield sdk


def _job(stack: Stack, job_id: str) -> dict[str, Any]:
    with stack.api() as api:
        [job] = stack.wait_jobs(api, [job_id], timeout=60)
        return job


def test_a_streamed_job_is_stored_as_the_non_streamed_answer_with_exact_usage(stack: Stack) -> None:
    request = chat_request(content="Tell me a story about queues")
    with stack.api() as api:
        streamed = api.post("/v1/jobs", json={"kind": "chat", "request": {**request, "stream": True}}).json()
        plain = api.post("/v1/jobs", json={"kind": "chat", "request": request}).json()
        streamed_job, plain_job = stack.wait_jobs(api, [streamed["id"], plain["id"]])
    assert streamed_job["status"] == "succeeded", streamed_job["error"]
    assert streamed_job["stream"] == "aggregated" and plain_job["stream"] is None
    result, expected = streamed_job["result"], plain_job["result"]
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == expected["choices"][0]["message"]["content"]
    assert result["choices"][0]["finish_reason"] == expected["choices"][0]["finish_reason"]
    assert result["usage"] == expected["usage"]  # the final usage chunk, not an estimate
    assert streamed_job["usage"]["total_tokens"] == expected["usage"]["total_tokens"]
    with stack.sim() as sim:
        stats = sim.get("/_stats").json()
    assert stats["streamed"] >= 1


def test_sdk_chat_stream_relays_the_chunks_and_the_job_keeps_the_aggregate(
    stack: Stack, client: OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello slowly"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    job_id = raw.headers["x-batchery-job-id"]
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len([c for c in chunks if c.choices]) > 2  # streamed in pieces, not one blob
    job = _job(stack, job_id)
    assert job["status"] == "succeeded" and job["stream"] == "aggregated"
    assert job["result"]["choices"][0]["message"]["content"] == text
    assert len(usage) == 1 and usage[0].total_tokens == job["usage"]["total_tokens"]


def test_without_include_usage_no_chunk_lacks_choices(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert chunks and all(chunk.choices for chunk in chunks)  # code reading choices[0] keeps working


def test_sdk_stream_helper_with_tools_and_async_clients(stack: Stack, client: OpenAI) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
    ) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and "city" in call.function.arguments

    async def run() -> list[str]:
        async with AsyncOpenAI(
            base_url=f"{stack.api_url}/v1", api_key=stack.api_key, max_retries=0, timeout=60
        ) as sdk:

            async def one(i: int) -> str:
                stream = await sdk.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": f"q {i}"}], stream=True
                )
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            return await asyncio.gather(*(one(i) for i in range(8)))

    texts = asyncio.run(run())
    assert len(texts) == 8 and all(texts)


def test_sdk_responses_stream(stack: Stack, client: OpenAI) -> None:
    with client.responses.stream(model="gpt-4o-mini", input="Write one line about queues") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    assert final.usage is not None and final.usage.total_tokens > 0


def test_a_retry_before_the_first_byte_is_invisible(stack: Stack, client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        user="sim:status=500;times=1;retry_after=0",
        stream=True,
    )
    job_id = raw.headers["x-batchery-job-id"]
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    job = _job(stack, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2


def test_an_upstream_error_before_the_stream_is_the_sdks_own_exception(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            user="sim:status=400",
            stream=True,
        )


def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event(client: OpenAI) -> None:
    seen: list[str] = []

    def read_all() -> None:
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me a long story about queues"}],
            user="sim:stream_error_after=2",
            stream=True,
        ):
            seen.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError):
        read_all()
    assert "".join(seen)  # the first chunks arrived before the error


def test_embeddings_refuse_stream(stack: Stack) -> None:
    with stack.api() as api:
        response = api.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x", "stream": True}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "streaming_unsupported"


def test_raw_sse_framing(stack: Stack) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with stack.api() as api, api.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert isinstance(httpx.Response(200, content=lines[0][6:]).json(), dict)
