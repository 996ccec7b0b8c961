"""The simulator's request validation and response bodies, called directly."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import jsonschema_rs
import pytest

from simulator.calls import CallContext, CallPlan, Usage, reply_text
from simulator.chat import plan_chat
from simulator.embeddings import embedding_vector, plan_embeddings
from simulator.errors import ApiError
from simulator.images import plan_image_generation
from simulator.png import tiny_png
from simulator.prompt_cache import PromptCache
from simulator.prompt_tokens import count_tokens
from simulator.responses_api import plan_response
from simulator.schema_fill import minimal_instance

pytestmark = pytest.mark.unit


def context(model: str, default_max_tokens: int = 1024) -> CallContext:
    return CallContext(model, default_max_tokens, PromptCache(), "http://sim.test")


def render(plan: CallPlan) -> tuple[dict[str, Any], Usage]:
    return plan.render()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


USER_MESSAGE = 3 + 3 + 1
"""Reply priming, a message's framing and the role "user": the prompt of ``user(text)`` less the text."""


def test_chat_text_answer_and_usage() -> None:
    plan = plan_chat({"messages": user("x" * 40), "max_tokens": 100, "n": 2}, context("gpt-4o-mini"))
    prompt = USER_MESSAGE + count_tokens("x" * 40, "gpt-4o-mini")
    assert prompt == 12  # forty x's are 5 tokens in o200k_base
    assert plan.charge.tokens == prompt + 100 * 2
    body, usage = render(plan)
    assert body["object"] == "chat.completion"
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert body["choices"][0]["message"]["content"] == reply_text(8 + prompt // 4)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] == prompt
    assert body["usage"]["completion_tokens"] == 2 * (8 + prompt // 4)
    assert body["usage"]["total_tokens"] == prompt + 22
    assert usage == Usage(prompt, 22)


def test_chat_reasoning_models_report_reasoning_and_refuse_max_tokens() -> None:
    body, _ = render(plan_chat({"messages": user("hello"), "max_completion_tokens": 12}, context("o3")))
    details = body["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] == 10  # 8 prompt tokens: 10 visible + 10 reasoning, cut to 12
    assert body["usage"]["completion_tokens"] == 12
    assert body["choices"][0]["finish_reason"] == "length"
    with pytest.raises(ApiError) as caught:
        plan_chat({"messages": user("hello"), "max_tokens": 12}, context("gpt-5-mini"))
    assert (caught.value.param, caught.value.code) == ("max_tokens", "unsupported_parameter")


def test_chat_counts_images_and_tool_definitions() -> None:
    parts = [
        {"type": "text", "text": "abcd"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(tiny_png()).decode()},
        },
    ]
    plan = plan_chat({"messages": [{"role": "user", "content": parts}], "max_tokens": 1}, context("gpt-4o"))
    assert plan.charge.tokens == USER_MESSAGE + 1 + 85 + 255 + 1
    tools = [{"type": "function", "function": {"name": "f"}}]
    with_tools = plan_chat({"messages": user("abcd"), "tools": tools, "max_tokens": 1}, context("gpt-4o"))
    function = 7 + count_tokens("f:", "gpt-4o") + 12  # the cookbook's figures for o200k_base models
    assert with_tools.charge.tokens == USER_MESSAGE + 1 + function + 1


def test_chat_calls_tools_with_schema_valid_arguments() -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city", "days"],
        "additionalProperties": False,
    }
    tools = [{"type": "function", "function": {"name": "weather", "parameters": parameters}}]
    body, _ = render(plan_chat({"messages": user("weather?"), "tools": tools}, context("gpt-4o")))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "weather"
    assert jsonschema_rs.is_valid(parameters, json.loads(call["function"]["arguments"]))
    answered = [*user("weather?"), {"role": "tool", "tool_call_id": "c", "content": "sunny"}]
    body, _ = render(plan_chat({"messages": answered, "tools": tools}, context("gpt-4o")))
    assert body["choices"][0]["finish_reason"] == "stop"
    forced = {"messages": answered, "tools": tools, "tool_choice": "required"}
    assert render(plan_chat(forced, context("gpt-4o")))[0]["choices"][0]["finish_reason"] == "tool_calls"
    off = {"messages": user("hi"), "tools": tools, "tool_choice": "none"}
    assert render(plan_chat(off, context("gpt-4o")))[0]["choices"][0]["message"]["content"]


def test_chat_json_modes() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}, "ok": {"type": "boolean"}},
        "required": ["tags", "ok"],
    }
    request = {
        "messages": user("tag it"),
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "t", "schema": schema, "strict": True},
        },
    }
    content = render(plan_chat(request, context("gpt-4o")))[0]["choices"][0]["message"]["content"]
    assert jsonschema_rs.is_valid(schema, json.loads(content))
    json_mode = {"messages": user("answer in JSON"), "response_format": {"type": "json_object"}}
    assert isinstance(
        json.loads(render(plan_chat(json_mode, context("gpt-4o")))[0]["choices"][0]["message"]["content"]),
        dict,
    )
    with pytest.raises(ApiError, match="must contain the word 'json'"):
        plan_chat({"messages": user("hi"), "response_format": {"type": "json_object"}}, context("gpt-4o"))


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "messages", "missing_required_parameter"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": []}, "messages", "invalid_value"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": user("x"), "n": "2"}, "n", "invalid_type"),
        ({"messages": user("x"), "n": 0}, "n", "invalid_value"),
        ({"messages": user("x"), "max_tokens": -1}, "max_tokens", "invalid_value"),
        ({"messages": user("x"), "stream": "yes"}, "stream", "invalid_type"),
        (
            {"messages": user("x"), "stream_options": {"include_usage": True}},
            "stream_options",
            "invalid_value",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
            "invalid_image_url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
            "invalid_base64_image",
        ),
        (
            {"messages": user("x"), "response_format": {"type": "yaml"}},
            "response_format.type",
            "invalid_value",
        ),
        (
            {
                "messages": user("x"),
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
            "invalid_value",
        ),
    ],
)
def test_chat_rejects_bad_requests(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        plan_chat(body, context("gpt-4o"))
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, param, code)


def test_repeated_long_prompts_report_cached_tokens() -> None:
    ctx = context("gpt-4o")
    request = {"messages": user("y" * 8000), "max_tokens": 5}
    first, _ = render(plan_chat(request, ctx))
    second, _ = render(plan_chat(request, ctx))
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 1920


def test_embeddings_are_deterministic_unit_vectors() -> None:
    plan = plan_embeddings(
        {"input": ["abcdefgh", [1, 2, 3]], "dimensions": 16}, context("text-embedding-3-small")
    )
    assert plan.charge.tokens == 1 + 3  # "abcdefgh" is one cl100k_base token
    body, usage = render(plan)
    assert body["object"] == "list"
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    first = body["data"][0]["embedding"]
    assert len(first) == 16
    assert sum(value * value for value in first) == pytest.approx(1.0)
    assert first == embedding_vector("text-embedding-3-small", "abcdefgh", 16)
    assert usage == Usage(prompt_tokens=4)
    encoded = render(
        plan_embeddings(
            {"input": "abcdefgh", "dimensions": 16, "encoding_format": "base64"},
            context("text-embedding-3-small"),
        )
    )[0]["data"][0]["embedding"]
    assert list(struct.unpack("<16f", base64.b64decode(encoded))) == pytest.approx(first, abs=1e-6)
    full = render(plan_embeddings({"input": "abcdefgh"}, context("text-embedding-3-large")))[0]
    assert len(full["data"][0]["embedding"]) == 3072


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": ""}, "input"),
        ({"input": [True]}, "input[0]"),
        ({"input": "x", "dimensions": 9999}, "dimensions"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ],
)
def test_embeddings_reject_bad_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        plan_embeddings(body, context("text-embedding-3-small"))
    assert caught.value.param == param


def test_gpt_image_answers_base64_png_with_usage() -> None:
    plan = plan_image_generation(
        {"prompt": "a cat", "n": 2, "size": "1024x1536", "quality": "high"}, context("gpt-image-1")
    )
    assert (plan.charge.tokens, plan.charge.images) == (2 + 2 * 6240, 2)
    body, usage = render(plan)
    assert base64.b64decode(body["data"][0]["b64_json"]) == tiny_png()
    assert body["usage"]["output_tokens"] == 12480
    assert body["usage"]["input_tokens_details"] == {"text_tokens": 2, "image_tokens": 0}
    assert usage == Usage(2, 12480, 2)
    with pytest.raises(ApiError) as caught:
        plan_image_generation({"prompt": "a cat", "response_format": "url"}, context("gpt-image-1"))
    assert caught.value.param == "response_format"


def test_dall_e_answers_urls_without_usage() -> None:
    body, usage = render(plan_image_generation({"prompt": "a dog"}, context("dall-e-3")))
    assert "usage" not in body
    assert body["data"][0]["url"].startswith("http://sim.test/_images/")
    assert body["data"][0]["revised_prompt"] == "a dog"
    assert usage == Usage(images=1)
    with pytest.raises(ApiError) as caught:
        plan_image_generation({"prompt": "a dog", "n": 2}, context("dall-e-3"))
    assert caught.value.param == "n"
    with pytest.raises(ApiError) as caught:
        plan_image_generation({"prompt": "a dog", "size": "9x9"}, context("dall-e-2"))
    assert caught.value.param == "size"


def test_responses_text_reasoning_and_truncation() -> None:
    plan = plan_response(
        {"input": "x" * 40, "instructions": "abcd", "max_output_tokens": 15}, context("gpt-5")
    )
    # Priming 3, instructions 3 + 1, the input as a user message 3 + 1 + 5: 16 prompt tokens.
    assert plan.charge.tokens == 16 + 15
    body, usage = render(plan)
    assert body["object"] == "response"
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["usage"]["output_tokens"] == 15
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == 12
    assert usage == Usage(16, 15)


def test_responses_function_calls_and_json() -> None:
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        }
    ]
    body, _ = render(
        plan_response({"input": [{"role": "user", "content": "find"}], "tools": tools}, context("gpt-4o"))
    )
    call = body["output"][0]
    assert (call["type"], call["name"], json.loads(call["arguments"])) == (
        "function_call",
        "lookup",
        {"q": "sim"},
    )
    assert body["tools"][0]["strict"] is True
    followed = [
        {"role": "user", "content": "find"},
        {"type": "function_call_output", "call_id": "c", "output": "42"},
    ]
    assert (
        render(plan_response({"input": followed, "tools": tools}, context("gpt-4o")))[0]["output"][0]["type"]
        == "message"
    )
    fmt = {
        "format": {
            "type": "json_schema",
            "name": "n",
            "schema": {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]},
        }
    }
    text = render(plan_response({"input": "n?", "text": fmt}, context("gpt-4o")))[0]["output"][0]["content"][
        0
    ]["text"]
    assert json.loads(text) == {"n": 0.0}


def test_responses_reject_bad_requests() -> None:
    with pytest.raises(ApiError) as caught:
        plan_response({}, context("gpt-4o"))
    assert caught.value.param == "input"
    with pytest.raises(ApiError) as caught:
        plan_response({"input": [{"role": "user", "content": [{"type": "input_video"}]}]}, context("gpt-4o"))
    assert caught.value.param == "input[0].content[0].type"


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "properties": {"a": {"type": "string", "minLength": 5, "maxLength": 6}},
            "required": ["a"],
        },
        {
            "type": "object",
            "properties": {"n": {"type": "integer", "exclusiveMinimum": 3, "maximum": 9}},
            "required": ["n"],
        },
        {
            "type": "object",
            "properties": {"x": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 2.5}]}},
            "required": ["x"],
        },
        {
            "type": "object",
            "properties": {"e": {"enum": ["b", "c"]}, "k": {"const": 7}},
            "required": ["e", "k"],
        },
        {"type": "array", "items": {"type": "string", "format": "date-time"}, "minItems": 2},
        {
            "$defs": {
                "P": {
                    "type": "object",
                    "properties": {"id": {"type": ["string", "null"]}},
                    "required": ["id"],
                }
            },
            "type": "object",
            "properties": {"p": {"$ref": "#/$defs/P"}},
            "required": ["p"],
        },
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                {"properties": {"b": {"type": "integer", "minimum": -3, "maximum": -1}}, "required": ["b"]},
            ]
        },
    ],
)
def test_minimal_instances_satisfy_their_schema(schema: dict[str, Any]) -> None:
    assert jsonschema_rs.is_valid(schema, minimal_instance(schema))
