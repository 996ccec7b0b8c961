"""The simulator streaming over a real socket, read by the official ``openai`` SDK (sync and async)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from simulator.process import running_simulator

pytestmark = pytest.mark.integration

TIERS = """
[tiers.chat.models."gpt-4o"]
rpm = 60000
tpm = 10000000

[tiers.chat.models."gpt-5-mini"]
rpm = 60000
tpm = 10000000

[tiers.chat.models."slow-lane"]
rpm = 1
tpm = 100000

[tiers.embed.models."text-embedding-3-small"]
rpm = 60000
tpm = 10000000
"""
PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["query", "limit"],
    "additionalProperties": False,
}
CHAT_TOOLS: Any = [{"type": "function", "function": {"name": "search", "parameters": PARAMETERS}}]
RESPONSE_TOOLS: Any = [{"type": "function", "name": "search", "parameters": PARAMETERS, "strict": True}]
MESSAGES: Any = [{"role": "user", "content": "Tell me about streaming, at some length please."}]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tiers = tmp_path_factory.mktemp("sim-stream") / "tiers.toml"
    tiers.write_text(TIERS)
    with running_simulator(["--tiers", str(tiers), "--require-key", "sk-test"]) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=10) as sdk:
        yield sdk


def admin(base_url: str, path: str, method: str = "GET") -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(base_url + path, method=method, data=b"" if method == "POST" else None)
    with opener.open(request, timeout=5) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def test_chat_text_stream_aggregates_to_the_plain_answer_with_the_same_usage(
    client: OpenAI, base_url: str
) -> None:
    plain = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    admin(base_url, "/_stats/reset", "POST")
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == "gpt-4o" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content
    ]
    assert len(pieces) > 3
    assert "".join(pieces) == plain.choices[0].message.content
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    stats = admin(base_url, "/_stats")
    assert stats["streamed"] == 1 and stats["by_model"]["gpt-4o"]["streamed"] == 1
    assert plain.usage is not None
    assert stats["usage"] == {
        "prompt_tokens": plain.usage.prompt_tokens,
        "completion_tokens": plain.usage.completion_tokens,
        "total_tokens": plain.usage.total_tokens,
    }


def test_chat_tool_call_stream_through_the_sdk_helper(client: OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-5-mini", messages=MESSAGES, tools=CHAT_TOOLS)
    with client.chat.completions.stream(model="gpt-5-mini", messages=MESSAGES, tools=CHAT_TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.delta" in kinds
    plain_call = (plain.choices[0].message.tool_calls or [None])[0]
    call = (final.choices[0].message.tool_calls or [None])[0]
    assert call is not None and plain_call is not None and call.type == "function"
    assert call.function.name == "search"
    assert json.loads(call.function.arguments) == json.loads(plain_call.function.arguments)
    assert final.choices[0].finish_reason == "tool_calls"


def test_async_chat_stream_with_two_choices(base_url: str) -> None:
    async def scenario() -> tuple[str | None, dict[int, str], list[str]]:
        async with AsyncOpenAI(
            base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=10
        ) as sdk:
            plain = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=2)
            texts: dict[int, str] = {}
            finishes: list[str] = []
            stream = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=2, stream=True)
            async for chunk in stream:
                for choice in chunk.choices:
                    texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                    if choice.finish_reason is not None:
                        finishes.append(choice.finish_reason)
            return plain.choices[0].message.content, texts, finishes

    expected, texts, finishes = asyncio.run(scenario())
    assert texts == {0: expected, 1: expected}
    assert finishes == ["stop", "stop"]


def test_responses_stream_helper_gives_the_plain_response(client: OpenAI) -> None:
    plain = client.responses.create(model="gpt-4o", input="Say something long about streams.")
    with client.responses.stream(model="gpt-4o", input="Say something long about streams.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 3 and "".join(deltas) == plain.output_text
    assert final.output_text == plain.output_text and final.status == "completed"
    assert final.usage == plain.usage


def test_async_responses_function_call_stream(base_url: str) -> None:
    async def scenario() -> tuple[str, list[str], str]:
        async with AsyncOpenAI(
            base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=10
        ) as sdk:
            plain = await sdk.responses.create(model="gpt-5-mini", input="search", tools=RESPONSE_TOOLS)
            stream = await sdk.responses.create(
                model="gpt-5-mini", input="search", tools=RESPONSE_TOOLS, stream=True
            )
            kinds: list[str] = []
            arguments = ""
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.function_call_arguments.delta":
                    arguments += event.delta
                if event.type == "response.completed":
                    assert event.response.usage == plain.usage
            plain_call = next(item for item in plain.output if item.type == "function_call")
            assert plain_call.type == "function_call"
            return arguments, kinds, plain_call.arguments

    arguments, kinds, expected = asyncio.run(scenario())
    assert json.loads(arguments) == json.loads(expected)
    assert "response.function_call_arguments.done" in kinds and kinds[-1] == "response.completed"


def test_stream_error_after_makes_the_sdk_fail_midway(client: OpenAI, base_url: str) -> None:
    admin(base_url, "/_stats/reset", "POST")
    received: list[str] = []
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, user="sim:stream_error_after=2"
    )

    def read_all() -> None:
        for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)

    with pytest.raises(openai.APIError, match="The server had an error"):
        read_all()
    assert len([piece for piece in received if piece]) == 2
    with client.responses.stream(
        model="gpt-4o", input="hello there", metadata={"sim": "stream_error_after=1"}
    ) as responses:
        events = list(responses)
        assert events[-1].type == "error" and events[-1].sequence_number == len(events) - 1
        assert [event.type for event in events].count("response.output_text.delta") == 1
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            responses.get_final_response()
    stats = admin(base_url, "/_stats")
    assert stats["streamed"] == 2 and stats["usage"]["total_tokens"] == 0


def test_errors_come_before_the_stream_as_plain_json(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as forced:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, user="sim:status=503")
    assert forced.value.response.headers["content-type"] == "application/json"
    client.chat.completions.create(model="slow-lane", messages=MESSAGES, stream=True).close()
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="slow-lane", messages=MESSAGES, stream=True)
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.BadRequestError) as options:
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}
        )
    assert options.value.param == "stream_options"
    with pytest.raises(openai.BadRequestError) as embeddings:
        client.embeddings.create(model="text-embedding-3-small", input="x", extra_body={"stream": True})
    assert embeddings.value.param == "stream" and embeddings.value.code == "unsupported_parameter"


def test_the_first_event_waits_for_the_latency(client: OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, stream=True, user="sim:latency=300"
    )
    # the server stamps its processing time when the headers leave, after sleeping the latency
    assert int(raw.headers["openai-processing-ms"]) >= 250
    assert raw.headers["content-type"].startswith("text/event-stream")
    with raw.parse() as stream:
        assert [chunk.id for chunk in stream]
    with pytest.raises(openai.APITimeoutError):  # nothing, not even headers, before the stall ends
        client.with_options(timeout=0.5).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, user="sim:hang=3"
        )
