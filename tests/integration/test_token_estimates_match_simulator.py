"""The product's prompt estimate equals the simulator's ``usage`` token for token.

Both count with OpenAI's published rules (message framing, names, function definitions by the
cookbook's recipe, schemas, images by model family) and the real encodings, each with its own code.
Every request here goes to a real simulator process; the estimate is computed before the call, the way
the limiter reserves it, and the reply budget (set explicitly) is taken off to compare prompts.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from domain.tokens.estimates import estimate_cost
from simulator.process import running_simulator

pytestmark = pytest.mark.integration

MODELS = {
    "chat": [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-5-nano",
        "o3",
        "o4-mini",
        "gpt-4",
        "gpt-3.5-turbo",
    ],
    "embed": ["text-embedding-3-small"],
    "img": ["gpt-image-1"],
}
AUTH = {"authorization": "Bearer sk-test"}


def _tiers() -> str:
    lines = []
    for tier, models in MODELS.items():
        for model in models:
            lines += [f'[tiers.{tier}.models."{model}"]', "rpm = 60000", "tpm = 100000000"]
            lines += ["ipm = 6000"] if tier == "img" else []
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tiers = tmp_path_factory.mktemp("sim") / "tiers.toml"
    tiers.write_text(_tiers())
    with (
        running_simulator(["--tiers", str(tiers), "--seed", "1"]) as url,
        httpx.Client(base_url=url, headers=AUTH, trust_env=False, timeout=30) as http,
    ):
        yield http


def png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


KOREAN = "안녕하세요. 배치 작업의 토큰 수를 정확히 세어 봅시다. 요금 한도를 지키는 것이 중요합니다."
JAPANESE = "東京は晴れです。トークン数を正確に数えましょう。"
CODE = 'def area(r: float) -> float:\n    """Circle area."""\n    return 3.14159 * r ** 2\n'
EMOJI = "🎉🚀 👨‍👩‍👧‍👦 🇰🇷 done ✨"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 서울."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                },
            },
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"summary": {"type": "string"}, "score": {"type": "integer"}},
            "required": ["summary", "score"],
        },
    },
}


def chat_requests() -> list[dict[str, Any]]:
    conversation = [
        {"role": "system", "content": "You are a careful assistant. 한국어로 답하세요."},
        {"role": "user", "content": KOREAN, "name": "minji"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "서울", "unit": "celsius"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "맑음"}'},
        {"role": "user", "content": [{"type": "text", "text": JAPANESE + CODE + EMOJI}]},
    ]
    images = [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": png(1024, 1024), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": png(2048, 4096)}},
        {"type": "image_url", "image_url": {"url": png(300, 200), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": png(1800, 2400), "detail": "auto"}},
    ]
    requests = []
    for model in MODELS["chat"]:
        budget = "max_completion_tokens" if model.startswith(("o", "gpt-5")) else "max_tokens"
        requests += [
            {"model": model, "messages": conversation, "tools": [WEATHER_TOOL], budget: 50},
            {"model": model, "messages": [{"role": "user", "content": images}], budget: 30, "n": 2},
            {
                "model": model,
                "messages": [
                    {"role": "developer", "content": "Reply in JSON."},
                    {"role": "user", "content": CODE},
                ],
                "response_format": SCHEMA,
                budget: 40,
            },
        ]
    return requests


@pytest.mark.parametrize("request_body", chat_requests(), ids=lambda body: body["model"])
def test_chat_prompt_estimate_equals_the_simulator_usage(
    client: httpx.Client, request_body: dict[str, Any]
) -> None:
    reply = (request_body.get("max_completion_tokens") or request_body.get("max_tokens")) * request_body.get(
        "n", 1
    )
    estimate = estimate_cost("chat", request_body).tokens - reply
    response = client.post("/v1/chat/completions", json=request_body)
    assert response.status_code == 200, response.text
    assert estimate == response.json()["usage"]["prompt_tokens"]


def test_legacy_functions_count_like_tools(client: httpx.Client) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "What's the weather in Busan?"}],
        "functions": [WEATHER_TOOL["function"]],
        "max_tokens": 20,
    }
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert estimate_cost("chat", body).tokens - 20 == response.json()["usage"]["prompt_tokens"]


@pytest.mark.parametrize("model", ["gpt-4o", "o3", "gpt-4.1-mini"])
def test_responses_prompt_estimate_equals_the_simulator_usage(client: httpx.Client, model: str) -> None:
    flat_tool = {"type": "function", **WEATHER_TOOL["function"]}
    bodies = [
        {"model": model, "input": KOREAN, "instructions": "Be brief.", "max_output_tokens": 64},
        {
            "model": model,
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": JAPANESE}]},
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": '{"city":"Tokyo"}',
                },
                {"type": "function_call_output", "call_id": "c1", "output": '{"temperature": 18}'},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": EMOJI},
                        {"type": "input_image", "image_url": png(1024, 768), "detail": "high"},
                    ],
                },
            ],
            "tools": [flat_tool],
            "max_output_tokens": 100,
        },
        {
            "model": model,
            "input": CODE,
            "text": {
                "format": {"type": "json_schema", "name": "a", "schema": SCHEMA["json_schema"]["schema"]}
            },
            "max_output_tokens": 80,
        },
    ]
    for body in bodies:
        estimate = estimate_cost("response", body).tokens - body["max_output_tokens"]
        response = client.post("/v1/responses", json=body)
        assert response.status_code == 200, response.text
        assert estimate == response.json()["usage"]["input_tokens"], body


def test_embeddings_and_image_generation_estimates_equal_the_simulator_usage(client: httpx.Client) -> None:
    embedding = {"model": "text-embedding-3-small", "input": [KOREAN, JAPANESE, CODE, EMOJI, [1, 2, 3]]}
    response = client.post("/v1/embeddings", json=embedding)
    assert response.status_code == 200, response.text
    assert estimate_cost("embedding", embedding).tokens == response.json()["usage"]["prompt_tokens"]
    image = {"model": "gpt-image-1", "prompt": KOREAN, "n": 2, "size": "1024x1536", "quality": "high"}
    response = client.post("/v1/images/generations", json=image)
    assert response.status_code == 200, response.text
    assert estimate_cost("image", image).tokens == response.json()["usage"]["total_tokens"]
