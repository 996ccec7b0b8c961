"""Cost estimates, offline token counting and usage normalisation.

Text counts here are the encodings' real counts (checked against tiktoken in test_token_exactness).
Image sizes and vision tokens are in test_image_tokens.
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.tokens.estimates import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    Cost,
    UsageColumns,
    actual_cost,
    estimate_cost,
    usage_columns,
)
from domain.tokens.images import (
    image_generation_output_tokens,
)
from domain.tokens.text import count_text_tokens, encoding_name_for_model, heuristic_tokens
from domain.tokens.tool_tokens import function_block_tokens
from tests.support.images import data_uri, png

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("offline")]  # counted with no network


def chat(model: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


# --- text tokens, offline --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("ft:gpt-4o-mini:acme::x1", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("llama-3-70b", "cl100k_base"),
        (None, "cl100k_base"),
    ],
)
def test_encoding_for_model(model: object, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 400, 100), ("日本語", 3), ("é" * 4, 2)],
)
def test_heuristic(text: str, tokens: int) -> None:
    assert heuristic_tokens(text) == tokens


def test_counts_are_exact_not_the_heuristic() -> None:
    # "hello world, how are you?" is 7 tokens in both encodings (the heuristic also says 7 by chance);
    # Korean and code are where the heuristic was far off.
    assert count_text_tokens("hello world, how are you?", "o200k_base") == 7
    korean = "오늘 날씨가 정말 좋네요"
    assert count_text_tokens(korean, "o200k_base") != heuristic_tokens(korean)
    code = "for i in range(10):\n    print(i)\n"
    assert count_text_tokens(code, "o200k_base") != heuristic_tokens(code)
    assert count_text_tokens("", "o200k_base") == 0
    cost = estimate_cost("chat", chat("gpt-4o", "hello world", max_tokens=10))
    assert cost == Cost(tokens=REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + 1 + 2 + 10)


def test_long_texts_are_counted_whole() -> None:
    # "word", then " word" 99,999 times, then the trailing space: no part is extrapolated.
    assert count_text_tokens("word " * 100_000, "o200k_base") == 100_001


# --- chat, vision and responses estimates ----------------------------------------------------------

OVERHEAD = REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + 1  # priming, framing and the role "user"


@pytest.mark.parametrize(
    ("extra", "reply"),
    [
        ({}, 1024),
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 70, "max_tokens": 50}, 70),
        ({"max_tokens": 50, "n": 3}, 150),
        ({"max_completion_tokens": 0}, 0),
        ({"n": 2}, 2048),
        ({"max_tokens": "50", "n": "3"}, 1024),
        ({"max_tokens": -5, "n": 0}, 1024),
        ({"max_tokens": True}, 1024),
        ({"max_tokens": 40.0}, 40),
    ],
)
def test_reply_budget(extra: dict[str, Any], reply: int) -> None:
    cost = estimate_cost("chat", chat("gpt-4o", "abcdefgh", **extra))
    text = count_text_tokens("abcdefgh", "o200k_base")
    assert cost == Cost(requests=1, tokens=OVERHEAD + text + reply, images=0)


def test_default_max_tokens_is_configurable() -> None:
    assert estimate_cost("chat", chat("gpt-4o", "abcd"), default_max_tokens=7).tokens == OVERHEAD + 1 + 7


def test_names_tools_and_schemas_count_as_prompt() -> None:
    base = estimate_cost("chat", chat("gpt-4o", "abcd", max_tokens=0)).tokens
    named = {
        "model": "gpt-4o",
        "max_tokens": 0,
        "messages": [{"role": "user", "content": "abcd", "name": "bob"}],
    }
    assert estimate_cost("chat", named).tokens == base + 1 + 1
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}
    with_tools = estimate_cost(
        "chat", chat("gpt-4o", "abcd", max_tokens=0, tools=tools, response_format=schema)
    )
    # The function as the cookbook counts it: 7 to open, "f:" (no properties), 12 to close.
    function = 7 + count_text_tokens("f:", "o200k_base") + 12
    schema_text = '{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}'
    assert with_tools.tokens == base + function + count_text_tokens(schema_text, "o200k_base")
    assert function_block_tokens(tools, "o200k_base", lambda text: 0, wrapped=True) == 7 + 12
    assert function_block_tokens(tools, "cl100k_base", lambda text: 0, wrapped=True) == 10 + 12


def test_vision_request_counts_its_images() -> None:
    parts = [
        {"type": "text", "text": "abcd"},
        {"type": "image_url", "image_url": {"url": data_uri(png(1024, 1024)), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.jpg", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/y.jpg"}},
    ]
    cost = estimate_cost("vision", chat("gpt-4o", parts, max_tokens=0))
    assert cost.tokens == OVERHEAD + 1 + 765 + 85 + 1445
    mini = estimate_cost("vision", chat("gpt-4o-mini", parts, max_tokens=0))
    assert mini.tokens == OVERHEAD + 1 + (2833 + 4 * 5667) + 2833 + (2833 + 8 * 5667)


def test_responses_body() -> None:
    as_string = estimate_cost("response", {"model": "gpt-4o", "input": "abcd", "max_output_tokens": 9})
    # A string input is a user message: framing, the role "user" and the text, one token each.
    assert as_string.tokens == REPLY_PRIMING_TOKENS + TOKENS_PER_MESSAGE + 1 + 1 + 9
    items = {
        "model": "gpt-4o",
        "instructions": "abcdefgh",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "abcd"}]},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "file_id": "f", "detail": "low"}],
            },
        ],
    }
    instructions = TOKENS_PER_MESSAGE + count_text_tokens("abcdefgh", "o200k_base")
    expected = REPLY_PRIMING_TOKENS + instructions + 3 * (TOKENS_PER_MESSAGE + 1) + 1 + 1445 + 85 + 1024
    assert estimate_cost("response", items).tokens == expected


@pytest.mark.parametrize(
    ("kind", "request_body"),
    [
        ("chat", None),
        ("chat", []),
        ("chat", {"messages": "hello"}),
        ("chat", {"messages": [None, 3, {"content": 5}, {"content": [None, 7, {"type": None}]}]}),
        ("vision", {"model": 3, "messages": [{"content": [{"type": "image_url", "image_url": 42}]}]}),
        ("vision", {"messages": [{"content": [{"type": "image_url", "image_url": {"url": ["x"]}}]}]}),
        ("response", {"input": 12, "instructions": ["x"], "max_output_tokens": "many"}),
        ("response", {"input": [None, 1, "abcd", {"type": "function_call", "arguments": "{}"}]}),
        ("embedding", {"input": {"a": 1}}),
        ("image", {"model": None, "n": "two", "size": 5, "quality": []}),
        ("unknown-kind", {"messages": []}),
    ],
)
def test_odd_shapes_never_raise(kind: str, request_body: Any) -> None:
    cost = estimate_cost(kind, request_body)
    assert cost.requests == 1
    assert cost.tokens >= 0
    assert cost.images >= 0


def test_unserialisable_and_deep_values_never_raise() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    body = chat("gpt-4o", "abcd", tools=deep, response_format={"x": {1, 2}}, max_tokens=0)
    assert estimate_cost("chat", body).tokens >= OVERHEAD


# --- embeddings and image generation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "tokens"),
    [
        ("abcdefgh", 1),
        (["abcd", "abcdefgh", ""], 2),
        ("안녕하세요", 5),  # cl100k_base: one token per syllable
        ([1, 2, 3, 4], 4),
        ([[1, 2, 3], [4, 5], []], 5),
        ([[1, True, "x"], None, 2.5], 1),
        (None, 0),
        ({"text": "abcd"}, 0),
    ],
)
def test_embedding_inputs(given: Any, tokens: int) -> None:
    assert estimate_cost("embedding", {"model": "text-embedding-3-small", "input": given}) == Cost(
        tokens=tokens
    )


@pytest.mark.parametrize(
    ("body", "cost"),
    [
        ({"model": "dall-e-3", "prompt": "abcd"}, Cost(tokens=0, images=1)),
        ({"model": "dall-e-2", "prompt": "abcd", "n": 4}, Cost(tokens=0, images=4)),
        ({"model": "gpt-image-1", "prompt": "abcd"}, Cost(tokens=1 + 1056, images=1)),
        (
            {"model": "gpt-image-1", "prompt": "abcd", "size": "auto", "quality": "auto"},
            Cost(tokens=1057, images=1),
        ),
        (
            {"model": "gpt-image-1", "prompt": "abcd", "size": "1024x1536", "quality": "high", "n": 2},
            Cost(tokens=1 + 2 * 6240, images=2),
        ),
        (
            {"model": "gpt-image-1", "prompt": "abcd", "size": "1536x1024", "quality": "low"},
            Cost(tokens=401, images=1),
        ),
    ],
)
def test_image_generation(body: dict[str, Any], cost: Cost) -> None:
    assert estimate_cost("image", body) == cost


@pytest.mark.parametrize(
    ("size", "quality", "tokens"),
    [
        ("1024x1024", "low", 272),
        ("1024x1024", "medium", 1056),
        ("1024x1024", "high", 4160),
        ("1024x1536", "low", 408),
        ("1024x1536", "medium", 1584),
        ("1024x1536", "high", 6240),
        ("1536x1024", "low", 400),
        ("1536x1024", "medium", 1568),
        ("1536x1024", "high", 6208),
        (None, None, 1056),
        ("4096x4096", "high", 6240),
        ("1024x1024", "ultra", 1056),
    ],
)
def test_gpt_image_output_table(size: str | None, quality: str | None, tokens: int) -> None:
    assert image_generation_output_tokens("gpt-image-1", size, quality) == tokens
    assert image_generation_output_tokens("dall-e-3", size, quality) == 0


# --- usage ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "usage", "images", "columns"),
    [
        (
            "chat",
            {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 12},
            },
            0,
            UsageColumns(100, 20, 120, 64, 12, 0),
        ),
        ("chat", {"prompt_tokens": 5, "completion_tokens": 6}, 0, UsageColumns(5, 6, 11, 0, 0, 0)),
        ("chat", {"prompt_tokens": 5, "prompt_tokens_details": None}, 0, UsageColumns(5, 0, 5, 0, 0, 0)),
        ("embedding", {"prompt_tokens": 8, "total_tokens": 8}, 0, UsageColumns(8, 0, 8, 0, 0, 0)),
        (
            "image",
            {
                "input_tokens": 50,
                "output_tokens": 4160,
                "total_tokens": 4210,
                "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
            },
            1,
            UsageColumns(50, 4160, 4210, 0, 0, 1),
        ),
        ("image", None, 3, UsageColumns(0, 0, 0, 0, 0, 3)),
        (
            "response",
            {
                "input_tokens": 30,
                "output_tokens": 10,
                "total_tokens": 40,
                "input_tokens_details": {"cached_tokens": 16},
                "output_tokens_details": {"reasoning_tokens": 4},
            },
            0,
            UsageColumns(30, 10, 40, 16, 4, 0),
        ),
        ("response", {"input_tokens": 30, "output_tokens": 10}, 0, UsageColumns(30, 10, 40, 0, 0, 0)),
        ("chat", {}, 0, UsageColumns()),
        (
            "chat",
            {"prompt_tokens": "5", "completion_tokens": -1, "total_tokens": True, "prompt_tokens_details": 3},
            -2,
            UsageColumns(),
        ),
        ("chat", "garbage", 0, UsageColumns()),
    ],
)
def test_usage_columns(kind: str, usage: Any, images: int, columns: UsageColumns) -> None:
    assert usage_columns(kind, usage, images=images) == columns


@pytest.mark.parametrize(
    ("kind", "usage", "images", "cost"),
    [
        ("chat", {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, 0, Cost(tokens=15)),
        ("chat", {"prompt_tokens": 10, "completion_tokens": 5}, 0, Cost(tokens=15)),
        ("embedding", {"prompt_tokens": 9}, 0, Cost(tokens=9)),
        ("response", {"input_tokens": 7, "output_tokens": 3}, 0, Cost(tokens=10)),
        (
            "image",
            {"input_tokens": 7, "output_tokens": 1056, "total_tokens": 1063},
            1,
            Cost(tokens=1063, images=1),
        ),
        ("image", None, 2, Cost(tokens=0, images=2)),
        ("chat", None, 0, Cost(tokens=0)),
    ],
)
def test_actual_cost(kind: str, usage: Any, images: int, cost: Cost) -> None:
    assert actual_cost(kind, usage, images=images) == cost


def test_cost_arithmetic() -> None:
    estimate = Cost(requests=1, tokens=1500, images=2)
    actual = Cost(requests=1, tokens=900, images=2)
    assert actual - estimate == Cost(requests=0, tokens=-600, images=0)
    assert estimate + actual == Cost(requests=2, tokens=2400, images=4)


def test_an_encoding_that_cannot_load_falls_back_to_the_heuristic() -> None:
    from domain.tokens.text import load_counter

    assert load_counter("no_such_base") is None
    assert count_text_tokens("abcdefgh" * 10, "no_such_base") == heuristic_tokens("abcdefgh" * 10) == 20
    assert load_counter("o200k_base") is not None
