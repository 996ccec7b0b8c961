"""The simulator's streamed events, built from finished bodies without a server."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from simulator.app import build_app
from simulator.calls import CallContext, StreamFrame
from simulator.chat import plan_chat
from simulator.directives import parse_directive
from simulator.embeddings import plan_embeddings
from simulator.errors import ApiError
from simulator.images import plan_image_generation
from simulator.prompt_cache import PromptCache
from simulator.responses_api import plan_response
from simulator.settings import SettingsError, SimulatorSettings, load_settings
from simulator.streaming import DONE_FRAME, split_reply, stream_script

pytestmark = pytest.mark.unit

AUTH = (b"authorization", b"Bearer sk-test")
MESSAGES = [{"role": "user", "content": "Tell me about streaming, at some length please."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
                "required": ["query", "limit"],
            },
        },
    }
]


def context(model: str = "gpt-4o") -> CallContext:
    return CallContext(model, 1024, PromptCache(), "http://sim.test")


def chat_events(body: dict[str, Any], model: str = "gpt-4o") -> tuple[dict[str, Any], list[StreamFrame]]:
    plan = plan_chat({**body, "stream": True}, context(model))
    assert plan.stream is not None
    answer, _ = plan.render()
    return answer, plan.stream.frames(answer)


def chunks(frames: list[StreamFrame]) -> list[dict[str, Any]]:
    assert frames[-1].data == DONE_FRAME
    parsed = []
    for frame in frames[:-1]:
        assert frame.data.startswith(b"data: ") and frame.data.endswith(b"\n\n")
        parsed.append(json.loads(frame.data[len(b"data: ") :]))
    return parsed


def typed_events(frames: list[StreamFrame]) -> list[dict[str, Any]]:
    events = []
    for frame in frames:
        head, data = frame.data.split(b"\n", 1)
        assert data.startswith(b"data: ") and data.endswith(b"\n\n")
        event = json.loads(data[len(b"data: ") :])
        assert head == b"event: " + event["type"].encode()
        events.append(event)
    return events


def aggregate(parsed: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Choices rebuilt from their deltas, as a client does."""
    choices: dict[int, dict[str, Any]] = {}
    for chunk in parsed:
        for choice in chunk["choices"]:
            built = choices.setdefault(choice["index"], {"content": None, "tool_calls": {}, "finish": None})
            delta = choice["delta"]
            if delta.get("content") is not None:
                built["content"] = (built["content"] or "") + delta["content"]
            for call in delta.get("tool_calls") or []:
                slot = built["tool_calls"].setdefault(call["index"], {"arguments": ""})
                slot.update({key: call[key] for key in ("id", "type") if key in call})
                function = call.get("function", {})
                if "name" in function:
                    slot["name"] = function["name"]
                slot["arguments"] += function.get("arguments", "")
            if choice["finish_reason"] is not None:
                built["finish"] = choice["finish_reason"]
    return choices


def test_reply_pieces_join_back_to_the_text() -> None:
    for text in ["", " ", "one", "This is a simulated reply.  Two  spaces ", '{"query":"sim","limit":1}']:
        pieces = split_reply(text)
        assert "".join(pieces) == text
        assert all(pieces)
    assert len(split_reply("This is a simulated reply from the batchery simulator.")) > 2


def test_chat_chunks_aggregate_to_the_completion_with_n_choices_and_usage() -> None:
    answer, frames = chat_events(
        {"messages": [{"role": "user", "content": "hi"}], "n": 2, "stream_options": {"include_usage": True}}
    )
    parsed = chunks(frames)
    for chunk in parsed:
        assert chunk["object"] == "chat.completion.chunk"
        for key in ("id", "created", "model", "service_tier", "system_fingerprint"):
            assert chunk[key] == answer[key]
        assert "obfuscation" in chunk
    assert all(chunk["usage"] is None for chunk in parsed[:-1])
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"] == answer["usage"]
    first = {chunk["choices"][0]["index"]: chunk["choices"][0] for chunk in reversed(parsed[:-1])}
    assert all(
        choice["delta"] == {"role": "assistant", "content": "", "refusal": None} for choice in first.values()
    )
    built = aggregate(parsed)
    assert sorted(built) == [0, 1]
    for index, choice in built.items():
        assert choice["content"] == answer["choices"][index]["message"]["content"]
        assert choice["finish"] == "stop"
    content_chunks = [frame for frame in frames if frame.is_delta]
    assert len(content_chunks) >= 4


def test_chat_tool_call_chunks_and_no_usage_or_obfuscation_unless_asked() -> None:
    answer, frames = chat_events(
        {
            "messages": [{"role": "user", "content": "search"}],
            "tools": TOOLS,
            "stream_options": {"include_obfuscation": False},
        }
    )
    parsed = chunks(frames)
    assert all("usage" not in chunk and "obfuscation" not in chunk for chunk in parsed)
    opening = parsed[0]["choices"][0]["delta"]
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert opening["role"] == "assistant" and opening["content"] is None
    assert opening["tool_calls"] == [
        {"index": 0, "id": call["id"], "type": "function", "function": {"name": "search", "arguments": ""}}
    ]
    built = aggregate(parsed)[0]
    assert built["tool_calls"][0] == {
        "id": call["id"],
        "type": "function",
        "name": "search",
        **call["function"],
    }
    assert built["finish"] == "tool_calls" and built["content"] is None
    assert parsed[-1]["choices"][0]["delta"] == {}


def test_stream_options_need_stream_and_other_endpoints_refuse_stream() -> None:
    with pytest.raises(ApiError) as refused:
        plan_chat(
            {"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}},
            context(),
        )
    assert refused.value.status == 400 and refused.value.param == "stream_options"
    assert "only allowed when 'stream' is enabled" in refused.value.message
    assert (
        plan_chat({"messages": [{"role": "user", "content": "x"}], "stream": False}, context()).stream is None
    )
    with pytest.raises(ApiError) as embeddings:
        plan_embeddings({"input": "x", "stream": True}, context("text-embedding-3-small"))
    with pytest.raises(ApiError) as images:
        plan_image_generation({"prompt": "x", "stream": True}, context("dall-e-2"))
    for error in (embeddings.value, images.value):
        assert (error.status, error.param, error.code) == (400, "stream", "unsupported_parameter")


def response_events(body: dict[str, Any], model: str = "gpt-4o") -> tuple[dict[str, Any], list[StreamFrame]]:
    plan = plan_response({**body, "stream": True}, context(model))
    assert plan.stream is not None
    answer, _ = plan.render()
    return answer, plan.stream.frames(answer)


def test_response_events_for_text_in_order_numbered_with_the_response_last() -> None:
    answer, frames = response_events({"input": "hello", "metadata": {"k": "v"}})
    events = typed_events(frames)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    kinds = [event["type"] for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas >= 3
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    for opening in events[:2]:
        assert opening["response"]["status"] == "in_progress" and opening["response"]["output"] == []
        assert opening["response"]["id"] == answer["id"]
    message = answer["output"][0]
    assert events[2]["item"] == {**message, "status": "in_progress", "content": []}
    text = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert text == message["content"][0]["text"]
    delta = events[4]
    assert (delta["item_id"], delta["output_index"], delta["content_index"], delta["logprobs"]) == (
        message["id"],
        0,
        0,
        [],
    )
    assert events[-4]["text"] == text and events[-2]["item"] == message
    assert events[-1]["response"] == answer and answer["status"] == "completed"


def test_response_events_for_a_function_call_of_a_reasoning_model() -> None:
    tools = [{"type": "function", "name": "search", "parameters": TOOLS[0]["function"]["parameters"]}]
    answer, frames = response_events({"input": "search", "tools": tools}, "gpt-5-mini")
    events = typed_events(frames)
    reasoning, call = answer["output"]
    assert [event["type"] for event in events[2:4]] == [
        "response.output_item.added",
        "response.output_item.done",
    ]
    assert events[2]["item"] == reasoning
    arguments = "".join(
        event["delta"] for event in events if event["type"] == "response.function_call_arguments.delta"
    )
    assert arguments == call["arguments"]
    done = next(event for event in events if event["type"] == "response.function_call_arguments.done")
    assert (done["item_id"], done["output_index"], done["arguments"]) == (call["id"], 1, call["arguments"])
    assert events[-1]["type"] == "response.completed" and events[-1]["response"] == answer


def test_truncated_response_ends_with_response_incomplete() -> None:
    answer, frames = response_events({"input": "hello", "max_output_tokens": 5})
    events = typed_events(frames)
    assert answer["status"] == "incomplete"
    assert events[-1]["type"] == "response.incomplete" and events[-1]["response"] == answer


def test_a_stream_fails_after_the_asked_number_of_deltas() -> None:
    plan = plan_chat({"messages": [{"role": "user", "content": "hi"}], "stream": True}, context())
    assert plan.stream is not None
    frames = plan.stream.frames(plan.render()[0])
    sent, completes = stream_script(frames, plan.stream, 2, malformed=False)
    assert not completes and DONE_FRAME not in sent
    assert json.loads(sent[-1][len(b"data: ") :])["error"]["type"] == "server_error"
    assert sum(1 for data in sent if b'"content":"' in data and b'"content":""' not in data) == 2
    whole, done = stream_script(frames, plan.stream, None, malformed=False)
    assert done and whole[-1] == DONE_FRAME
    beyond, _ = stream_script(frames, plan.stream, 10_000, malformed=False)
    assert b'"finish_reason":"stop"' not in b"".join(beyond)
    broken, _ = stream_script(frames, plan.stream, None, malformed=True)
    assert len(broken) == 1 and not broken[0].endswith(b"\n\n")


def test_a_response_stream_fails_with_a_numbered_error_event() -> None:
    plan = plan_response({"input": "hello", "stream": True}, context())
    assert plan.stream is not None
    frames = plan.stream.frames(plan.render()[0])
    sent, completes = stream_script(frames, plan.stream, 1, malformed=False)
    assert not completes
    head, data = sent[-1].split(b"\n", 1)
    error = json.loads(data[len(b"data: ") :])
    assert head == b"event: error"
    assert error == {
        "type": "error",
        "code": "server_error",
        "message": error["message"],
        "param": None,
        "sequence_number": len(sent) - 1,
    }
    assert typed_events([StreamFrame(data) for data in sent[:-1]])[-1]["type"] == "response.output_text.delta"


def test_stream_error_after_directive() -> None:
    assert parse_directive("sim:stream_error_after=3; latency=20").stream_error_after == 3
    with pytest.raises(ApiError, match="stream_error_after must be an integer"):
        parse_directive("sim:stream_error_after=x")


def test_a_client_leaving_midway_ends_the_stream_and_counts_no_usage() -> None:
    app = build_app(SimulatorSettings(no_limits=True, stream_chunk_ms=1.0), rng=random.Random(1))
    body = json.dumps({"model": "gpt-4o", "messages": MESSAGES, "stream": True}).encode()
    sent: list[dict[str, Any]] = []
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent:
            return {"type": "http.request", "body": body, "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 3:  # the start and two frames
            left.set()

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [AUTH],
        "query_string": b"",
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-type"] == b"text/event-stream; charset=utf-8"
    frames = [message["body"] for message in sent[1:]]
    assert DONE_FRAME not in frames and 2 <= len(frames) < 6
    stats = app.state.stats.snapshot()
    assert stats["streamed"] == 1 and stats["by_status"] == {"200": 1}
    assert stats["usage"]["total_tokens"] == 0


def test_stream_chunk_ms_setting() -> None:
    assert load_settings({}, {"BATCHERY_SIM_STREAM_CHUNK_MS": "0"}).stream_chunk_ms == 0
    assert SimulatorSettings().stream_chunk_ms == 5.0
    with pytest.raises(SettingsError, match="--stream-chunk-ms"):
        load_settings({"stream_chunk_ms": "-1"}, {})
