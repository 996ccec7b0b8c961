"""The simulator's token arithmetic and image header parsing."""

from __future__ import annotations

import base64
import io
import struct

import pytest
from PIL import Image

from simulator.image_size import BadImageDataError, size_from_bytes, size_from_data_url
from simulator.png import tiny_png
from simulator.prompt_cache import PromptCache
from simulator.prompt_tokens import PromptCounter, count_tokens, encoding_for
from simulator.tokens import (
    CompletionTokens,
    admission_tokens,
    cached_tokens,
    image_output_tokens,
    image_tokens,
    image_url_tokens,
    is_reasoning_model,
    plan_completion,
)

pytestmark = pytest.mark.unit


def data_url(kind: str, data: bytes) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-5-nano", "o200k_base"),
        ("o3", "o200k_base"),
        ("gpt-image-1", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
    ],
)
def test_each_model_counts_with_its_encoding(model: str, encoding: str) -> None:
    assert encoding_for(model) == encoding


def test_text_costs_its_real_tokens() -> None:
    # Token ids published with tiktoken: "hello world" is [15339, 1917] in cl100k_base.
    assert count_tokens("hello world", "gpt-4") == 2
    assert count_tokens("hello world", "gpt-4o") == 2
    assert count_tokens("", "gpt-4o") == 0
    korean = "안녕하세요, 오늘 날씨가 정말 좋네요."
    assert count_tokens(korean, "gpt-4o") < count_tokens(korean, "gpt-4")  # o200k's larger vocabulary
    assert count_tokens("x" * 400, "gpt-4o") != 100  # not a characters-per-token rule


WEATHER = {
    "name": "get_weather",
    "description": "Get the weather.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "The city."},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
    },
}


@pytest.mark.parametrize(("model", "opening"), [("gpt-4o", 7), ("gpt-4", 10)])
def test_functions_follow_the_cookbook_recipe(model: str, opening: int) -> None:
    expected = (
        opening
        + count_tokens("get_weather:Get the weather", model)  # the final period dropped
        + 3  # properties
        + 3
        + count_tokens("city:string:The city", model)
        + 3
        - 3  # an enum
        + (3 + 1) * 2  # each value, one token each
        + count_tokens("unit:string:", model)
        + 12
    )
    counter = PromptCounter(model)
    assert counter.functions([{"type": "function", "function": WEATHER}], nested=True) == expected
    assert counter.functions([WEATHER], nested=False) == expected
    assert counter.functions([{"type": "web_search"}], nested=False) == count_tokens(
        '{"type":"web_search"}', model
    )
    assert counter.functions([], nested=True) == 0


def test_messages_carry_framing_role_and_name() -> None:
    counter = PromptCounter("gpt-4o")
    plain = counter.message({"role": "user", "content": "hello world"})
    assert plain == 3 + 1 + 2
    assert counter.message({"role": "user", "content": "hello world", "name": "bob"}) == plain + 1 + 1
    parts = [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]
    assert counter.message({"role": "user", "content": parts}) == plain


@pytest.mark.parametrize(
    ("model", "size", "detail", "tokens"),
    [
        ("gpt-4o", (1024, 1024), "low", 85),
        ("gpt-4o", (1024, 1024), "high", 765),
        ("gpt-4o", (2048, 4096), "high", 1105),
        ("gpt-4o", (512, 512), "auto", 255),
        ("gpt-4o", (4096, 8192), "high", 1105),
        ("gpt-4o-mini", (1024, 1024), "low", 2833),
        ("gpt-4o-mini", (1024, 1024), "high", 2833 + 4 * 5667),
        ("o1", (1024, 1024), "low", 75),
        ("o3", (1024, 1024), "high", 75 + 4 * 150),
        ("gpt-4.1-mini", (1024, 1024), "low", 1659),  # 1024 patches x 1.62, whatever the detail
        ("gpt-4.1-nano", (1800, 2400), "high", 3572),  # scaled to 33 x 44 = 1452 patches, x 2.46
        ("o4-mini", (4096, 4096), "auto", 2617),  # scaled to 39 x 39 = 1521 patches, x 1.72
    ],
)
def test_image_tokens_follow_the_model_family_rule(
    model: str, size: tuple[int, int], detail: str, tokens: int
) -> None:
    assert image_tokens(model, size, detail) == tokens


def encoded(kind: str, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buffer, kind)
    return buffer.getvalue()


def test_image_sizes_from_headers() -> None:
    assert size_from_bytes(tiny_png()) == (8, 8)
    assert size_from_bytes(encoded("PNG", 2048, 4096)) == (2048, 4096)
    assert size_from_bytes(encoded("GIF", 300, 200)) == (300, 200)
    assert size_from_bytes(encoded("JPEG", 640, 480)) == (640, 480)
    assert size_from_bytes(encoded("WEBP", 320, 240)) == (320, 240)
    vp8x = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x0a\x00\x00\x00" + b"\x00" * 4
    vp8x += (799).to_bytes(3, "little") + (599).to_bytes(3, "little")
    assert size_from_bytes(vp8x) == (800, 600)
    bits = (320 - 1) | ((240 - 1) << 14)
    vp8l = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + struct.pack("<I", bits)
    assert size_from_bytes(vp8l) == (320, 240)
    vp8 = (
        b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00"
        + b"\x00\x00\x00\x9d\x01\x2a"
        + struct.pack("<HH", 64, 48)
    )
    assert size_from_bytes(vp8) == (64, 48)
    assert size_from_bytes(b"not an image") is None
    assert size_from_bytes(b"\xff\xd8\xff") is None


def test_data_urls_are_measured_and_checked() -> None:
    assert size_from_data_url(data_url("png", encoded("PNG", 2048, 4096))) == (2048, 4096)
    assert image_url_tokens("gpt-4o", data_url("png", encoded("PNG", 2048, 4096)), "high") == 1105
    assert image_url_tokens("gpt-4o", data_url("jpeg", encoded("JPEG", 512, 512)), "high") == 255
    assert image_url_tokens("gpt-4o", "https://example.com/cat.png", "high") == 765
    assert image_url_tokens("gpt-4o", data_url("png", b"unknown format"), "high") == 765
    with pytest.raises(BadImageDataError, match="base64"):
        size_from_data_url("data:image/png;base64,@@@@")
    with pytest.raises(BadImageDataError):
        size_from_data_url("data:image/png,raw")


def test_completions_are_predictable_and_capped() -> None:
    assert plan_completion(40, 1000, reasoning_model=False) == CompletionTokens(18, 0, False)
    assert plan_completion(40, 1000, reasoning_model=True) == CompletionTokens(18, 18, False)
    assert plan_completion(40, 10, reasoning_model=False) == CompletionTokens(10, 0, True)
    assert plan_completion(40, 20, reasoning_model=True) == CompletionTokens(2, 18, True)
    assert plan_completion(40, 5, reasoning_model=True) == CompletionTokens(0, 5, True)
    assert plan_completion(40, 5, reasoning_model=True).total == 5


def test_reasoning_models() -> None:
    assert all(is_reasoning_model(name) for name in ("o1", "o3", "o4-mini", "gpt-5", "gpt-5-mini"))
    assert not any(is_reasoning_model(name) for name in ("gpt-4o", "gpt-4.1-mini", "omni"))


def test_admission_counts_the_prompt_and_every_possible_completion() -> None:
    assert admission_tokens(100, 256) == 356
    assert admission_tokens(100, 256, choices=3) == 868


def test_cached_tokens_need_a_repeated_long_prompt() -> None:
    assert cached_tokens(5000, seen_before=False) == 0
    assert cached_tokens(1000, seen_before=True) == 0
    assert cached_tokens(1500, seen_before=True) == 1408
    cache = PromptCache(capacity=2)
    assert not cache.seen_before(b"a")
    assert cache.seen_before(b"a")
    cache.seen_before(b"b")
    cache.seen_before(b"c")
    assert not cache.seen_before(b"a")


@pytest.mark.parametrize(
    ("size", "quality", "tokens"),
    [
        ("1024x1024", "low", 272),
        ("1024x1536", "high", 6240),
        ("1536x1024", "medium", 1568),
        ("auto", "auto", 1056),
    ],
)
def test_gpt_image_output_tokens(size: str, quality: str, tokens: int) -> None:
    assert image_output_tokens(size, quality) == tokens
