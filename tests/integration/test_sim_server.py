"""The simulator as a real process, driven over HTTP; bodies are checked against OpenAI's OpenAPI schemas."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.process import running_simulator
from tests.support.openai_schema import assert_conforms

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"authorization": "Bearer sk-test"}
TIERS = """
[tiers.chat.models."gpt-4o-mini"]
rpm = 60000
tpm = 10000000

[tiers.chat.models."o3"]
rpm = 60000
tpm = 10000000

[tiers.chat.models."tiny-model"]
rpm = 2
tpm = 1000

[tiers.embed.models."text-embedding-3-small"]
rpm = 60000
tpm = 10000000

[tiers.img.models."gpt-image-1"]
rpm = 6000
tpm = 10000000
ipm = 6000

[tiers.img.models."dall-e-3"]
rpm = 6000
ipm = 6000
"""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tiers = tmp_path_factory.mktemp("sim") / "tiers.toml"
    tiers.write_text(TIERS)
    args = ["--tiers", str(tiers), "--seed", "1", "--default-max-tokens", "64", "--hang-seconds", "0.05"]
    with running_simulator(args) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, trust_env=False, timeout=10) as http:
        yield http


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_chat_completion_shapes(client: httpx.Client) -> None:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    }
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
    ]
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}
    requests = [
        {"model": "gpt-4o-mini", "messages": user("Hello there"), "n": 3, "max_tokens": 5},
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}],
        },
        {
            "model": "gpt-4o-mini",
            "messages": user("weather in Paris?"),
            "tools": tools,
            "tool_choice": "auto",
        },
        {
            "model": "o3",
            "messages": user("as json"),
            "max_completion_tokens": 20,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": parameters},
            },
        },
    ]
    bodies = []
    for request in requests:
        response = client.post("/v1/chat/completions", json=request)
        assert response.status_code == 200, response.text
        assert_conforms("CreateChatCompletionResponse", response.json())
        bodies.append(response.json())
    assert len(bodies[0]["choices"]) == 3
    assert bodies[0]["choices"][0]["finish_reason"] == "length"
    # 3 priming + 3 framing + "user" + "?", and gpt-4o-mini's base figure for a low-detail image
    assert bodies[1]["usage"]["prompt_tokens"] == 3 + 3 + 1 + 1 + 2833
    call = bodies[2]["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "sim", "unit": "c"}
    assert json.loads(bodies[3]["choices"][0]["message"]["content"]) == {"city": "sim", "unit": "c"}
    assert bodies[3]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0


def test_embeddings_images_and_responses_shapes(client: httpx.Client) -> None:
    embeddings = client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4}
    )
    assert_conforms("CreateEmbeddingResponse", embeddings.json())
    assert [len(item["embedding"]) for item in embeddings.json()["data"]] == [4, 4]
    packed = client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "a", "encoding_format": "base64"}
    )
    assert len(base64.b64decode(packed.json()["data"][0]["embedding"])) == 1536 * 4
    gpt_image = client.post("/v1/images/generations", json={"model": "gpt-image-1", "prompt": "cat", "n": 2})
    assert_conforms("ImagesResponse", gpt_image.json())
    assert gpt_image.json()["usage"]["output_tokens"] == 2 * 1056
    assert base64.b64decode(gpt_image.json()["data"][0]["b64_json"]).startswith(b"\x89PNG")
    dall_e = client.post(
        "/v1/images/generations", json={"model": "dall-e-3", "prompt": "dog", "size": "1792x1024"}
    )
    assert_conforms("ImagesResponse", dall_e.json())
    assert client.get(dall_e.json()["data"][0]["url"]).content.startswith(b"\x89PNG")
    response = client.post(
        "/v1/responses",
        json={"model": "o3", "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
    )
    assert response.status_code == 200, response.text
    assert_conforms("Response", response.json())
    usage = response.json()["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o-mini"}, 400, "missing_required_parameter"),
        (
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": user("x"), "n": "two"},
            400,
            "invalid_type",
        ),
        ("/v1/embeddings", {"model": "no-such-model", "input": "x"}, 404, "model_not_found"),
        ("/v1/images/generations", {"model": "dall-e-3", "prompt": "x", "n": 2}, 400, "invalid_value"),
        ("/v1/responses", {"model": "o3"}, 400, "missing_required_parameter"),
    ],
)
def test_errors_are_openai_shaped(
    client: httpx.Client, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status
    assert_conforms("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"].startswith("req_")


def test_tiny_limit_answers_429_with_headers(client: httpx.Client) -> None:
    client.post("/_control", json={"reset_limits": True})
    request = {"model": "tiny-model", "messages": user("hi"), "max_tokens": 10}
    first = client.post("/v1/chat/completions", json=request)
    second = client.post("/v1/chat/completions", json=request)
    assert (first.status_code, second.status_code) == (200, 429)
    for response in (first, second):
        assert response.headers["x-ratelimit-limit-requests"] == "2"
        assert response.headers["x-ratelimit-limit-tokens"] == "1000"
        for name in ("remaining-requests", "remaining-tokens", "reset-requests", "reset-tokens"):
            assert response.headers[f"x-ratelimit-{name}"]
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert_conforms("ErrorResponse", second.json())
    error = second.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert error["message"].startswith(
        "Rate limit reached for tiny-model in organization org-sim on requests per min"
    )
    assert 1 <= int(second.headers["retry-after"]) <= 30
    assert 0 < int(second.headers["retry-after-ms"]) <= 30_000
    too_large = client.post("/v1/chat/completions", json={**request, "max_tokens": 5000})
    assert too_large.status_code == 429
    assert too_large.json()["error"]["message"].startswith("Request too large for tiny-model")


def test_directives_and_faults(client: httpx.Client) -> None:
    def call(user_field: str) -> httpx.Response:
        return client.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user("x"), "user": user_field}
        )

    flaky = [call("sim:status=500;times=2;latency=1").status_code for _ in range(3)]
    assert flaky == [500, 500, 200]
    throttled = call("sim:status=429;retry_after=3")
    assert_conforms("ErrorResponse", throttled.json())
    assert (throttled.headers["retry-after"], throttled.headers["retry-after-ms"]) == ("3", "3000")
    assert call("sim:quota").json()["error"]["type"] == "insufficient_quota"
    assert call("sim:hang").status_code == 200
    assert call("sim:malformed").status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(call("sim:malformed").content)
    try:
        assert client.post("/_control", json={"error_rate": 1.0, "latency": "uniform:0:1"}).status_code == 200
        failed = call("plain-user")
        assert failed.status_code in (500, 502, 503)
        assert_conforms("ErrorResponse", failed.json())
        assert failed.json()["error"]["type"] == "server_error"
    finally:
        client.post("/_control", json={"error_rate": 0.0, "latency": "fixed:0"})
    assert call("plain-user").status_code == 200


def test_stats_count_calls_and_usage(client: httpx.Client) -> None:
    client.post("/_stats/reset")
    for _ in range(3):
        response = client.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": user("abcdefgh")}
        )
        assert response.status_code == 200
    client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "abcd"})
    stats = client.get("/_stats").json()
    assert stats["requests_total"] == 4
    mini = stats["by_model"]["gpt-4o-mini"]
    assert (mini["requests"], mini["succeeded"]) == (3, 3)
    # Each prompt: 3 priming + 3 framing + "user" + "abcdefgh" (one token) = 8; 8 + 8 // 4 completion
    assert (mini["prompt_tokens"], mini["completion_tokens"]) == (3 * 8, 3 * 10)
    assert mini["tokens_charged"] == 3 * (8 + 64)
    assert stats["by_model"]["text-embedding-3-small"]["prompt_tokens"] == 1
    assert stats["usage"]["total_tokens"] == 24 + 30 + 1
    assert stats["by_status"] == {"200": 4}
    assert stats["in_flight"] == 0
    assert stats["max_in_flight"] >= 1


def test_bad_settings_stop_start_up_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--error-rate", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "--error-rate: must be between 0 and 1" in result.stderr
