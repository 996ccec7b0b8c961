"""The simulator app in-process (ASGI transport, fake clock): the call pipeline end to end."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from config.tiers import parse_tiers
from simulator.app import SimulatorApp, build_app
from simulator.settings import SimulatorSettings

pytestmark = pytest.mark.unit

AUTH = {"authorization": "Bearer sk-test"}
TIERS = {
    "tiers": {
        "chat": {
            "models": {
                "small": {"rpm": 120, "tpm": 6000},
                "twin-a": {"rpm": 60, "budget": "twins"},
                "twin-b": {"rpm": 60, "budget": "twins"},
                "free": {"rpm": 1_000_000},
            }
        },
        "images": {"models": {"dall-e-2": {"rpm": 600, "ipm": 60}}},
    }
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(clock: FakeClock | None = None, **overrides: Any) -> SimulatorApp:
    settings = SimulatorSettings(default_max_tokens=100, **overrides)
    return build_app(settings, tiers=parse_tiers(TIERS), clock=clock or FakeClock(), rng=random.Random(3))


def run(app: SimulatorApp, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
            await scenario(client)

    asyncio.run(main())


def chat(model: str = "small", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 10, **extra}


def test_success_carries_request_id_and_limit_headers() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
        assert response.status_code == 200
        assert response.headers["x-request-id"].startswith("req_")
        assert response.headers["x-ratelimit-limit-requests"] == "120"
        assert response.headers["x-ratelimit-remaining-requests"] == "119"
        assert response.headers["x-ratelimit-limit-tokens"] == "6000"
        # 8 prompt tokens (3 priming, 3 framing, "user", "hello") and max_tokens 10
        assert response.headers["x-ratelimit-remaining-tokens"] == str(6000 - 8 - 10)
        assert response.headers["x-ratelimit-reset-tokens"] == "180ms"  # 18 tokens at 6000 a minute

    run(make_app(), scenario)


def test_quantized_limits_answer_429_with_retry_headers() -> None:
    clock = FakeClock()

    async def scenario(client: httpx.AsyncClient) -> None:
        statuses = [
            (await client.post("/v1/chat/completions", json=chat(), headers=AUTH)).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]  # 120 rpm = 2 per 1 s window
        limited = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
        error = limited.json()["error"]
        assert error["type"] == "requests"
        assert error["code"] == "rate_limit_exceeded"
        assert error["message"].startswith(
            "Rate limit reached for small in organization org-sim on requests per min (RPM): "
            "Limit 120, Used 2, Requested 1. Please try again in 1s."
        )
        assert (limited.headers["retry-after"], limited.headers["retry-after-ms"]) == ("1", "1000")
        assert limited.headers["x-ratelimit-remaining-requests"] == "118"
        assert limited.headers["x-request-id"]
        clock.now += 1
        assert (await client.post("/v1/chat/completions", json=chat(), headers=AUTH)).status_code == 200
        big = await client.post("/v1/chat/completions", json=chat(max_tokens=5000), headers=AUTH)
        assert big.status_code == 429
        assert big.json()["error"]["type"] == "tokens"
        stats = (await client.get("/_stats")).json()
        assert stats["rate_limited"] == 3
        assert stats["by_model"]["small"]["rate_limited"] == 3

    run(make_app(clock), scenario)


def test_budgets_are_shared_and_limits_can_be_scaled_or_lifted() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        first = await client.post("/v1/chat/completions", json=chat("twin-a"), headers=AUTH)
        second = await client.post("/v1/chat/completions", json=chat("twin-b"), headers=AUTH)
        assert (first.status_code, second.status_code) == (200, 429)
        control = await client.post("/_control", json={"no_limits": True})
        assert control.json()["no_limits"] is True
        lifted = await client.post("/v1/chat/completions", json=chat("twin-b"), headers=AUTH)
        assert lifted.status_code == 200
        assert "x-ratelimit-limit-requests" not in lifted.headers
        await client.post("/_control", json={"no_limits": False, "limit_scale": 0.5, "reset_limits": True})
        scaled = await client.post("/v1/chat/completions", json=chat("small"), headers=AUTH)
        assert scaled.headers["x-ratelimit-limit-requests"] == "60"

    run(make_app(), scenario)


def test_images_per_minute() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"model": "dall-e-2", "prompt": "a cat", "n": 2}
        first = await client.post("/v1/images/generations", json=body, headers=AUTH)
        assert first.status_code == 200
        assert first.headers["x-ratelimit-remaining-images"] == "58"
        second = await client.post("/v1/images/generations", json=body, headers=AUTH)
        assert second.status_code == 429
        assert second.json()["error"]["type"] == "images"
        picture = await client.get(first.json()["data"][0]["url"].removeprefix("http://sim.test"))
        assert picture.headers["content-type"] == "image/png"
        assert picture.content.startswith(b"\x89PNG")

    run(make_app(), scenario)


def test_directives() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        flaky = chat("free", user="sim:status=503;times=2;retry_after=2")
        statuses = [(await client.post("/v1/chat/completions", json=flaky, headers=AUTH)) for _ in range(3)]
        assert [response.status_code for response in statuses] == [503, 503, 200]
        assert statuses[0].json()["error"]["type"] == "server_error"
        assert statuses[0].headers["retry-after-ms"] == "2000"
        rejected = await client.post(
            "/v1/chat/completions", json=chat("free", user="sim:status=400"), headers=AUTH
        )
        assert rejected.status_code == 400
        assert rejected.json()["error"]["type"] == "invalid_request_error"
        quota = await client.post("/v1/chat/completions", json=chat("free", user="sim:quota"), headers=AUTH)
        assert quota.status_code == 429
        assert quota.json()["error"]["code"] == "insufficient_quota"
        broken = await client.post(
            "/v1/chat/completions", json=chat("free", user="sim:malformed"), headers=AUTH
        )
        assert broken.status_code == 200
        with pytest.raises(ValueError):
            broken.json()
        stalled = await client.post(
            "/v1/chat/completions", json=chat("free", user="sim:hang=0"), headers=AUTH
        )
        assert stalled.status_code == 200
        bad = await client.post("/v1/chat/completions", json=chat("free", user="sim:boom"), headers=AUTH)
        assert (bad.status_code, bad.json()["error"]["param"]) == (400, "user")
        via_metadata = {"model": "free", "input": "hi", "metadata": {"sim": "status=502"}}
        assert (await client.post("/v1/responses", json=via_metadata, headers=AUTH)).status_code == 502
        plain_user = await client.post("/v1/chat/completions", json=chat("free", user="alice"), headers=AUTH)
        assert plain_user.status_code == 200

    run(make_app(), scenario)


def test_random_faults_switched_at_runtime() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        await client.post("/_control", json={"error_rate": 1})
        failed = await client.post("/v1/chat/completions", json=chat("free"), headers=AUTH)
        assert failed.status_code in (500, 502, 503)
        assert failed.json()["error"]["type"] == "server_error"
        await client.post("/_control", json={"error_rate": 0, "malformed_rate": 1})
        garbled = await client.post("/v1/chat/completions", json=chat("free"), headers=AUTH)
        assert garbled.status_code == 200
        with pytest.raises(ValueError):
            garbled.json()
        await client.post("/_control", json={"malformed_rate": 0, "quota_exceeded": True})
        assert (await client.post("/v1/chat/completions", json=chat("free"), headers=AUTH)).status_code == 429
        refused = await client.post("/_control", json={"error_rate": "often"})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "error_rate"
        assert (await client.post("/_control", json={"port": 1})).json()["error"]["param"] == "port"

    run(make_app(), scenario)


def test_auth_models_and_routes() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 401
        wrong = await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_api_key")
        azure = await client.post(
            "/openai/deployments/small/chat/completions?api-version=2024-10-21",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"api-key": "sk-right"},
        )
        assert (azure.status_code, azure.json()["model"]) == (200, "small")
        unknown = await client.post(
            "/v1/chat/completions", json=chat("gpt-9"), headers={"api-key": "sk-right"}
        )
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")
        not_json = await client.post("/v1/embeddings", content=b"{", headers={"api-key": "sk-right"})
        assert not_json.status_code == 400
        assert (await client.get("/v1/chat/completions")).status_code == 405
        missing = await client.get("/v1/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "Invalid URL (GET /v1/nothing)"
        assert missing.headers["x-request-id"]
        models = (await client.get("/v1/models")).json()
        assert [model["id"] for model in models["data"]] == ["dall-e-2", "free", "small", "twin-a", "twin-b"]

    run(make_app(require_key="sk-right"), scenario)


def test_stats_count_calls_and_usage() -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for _ in range(2):
            await client.post("/v1/chat/completions", json=chat("free", text="x" * 40), headers=AUTH)
        await client.post("/v1/embeddings", json={"model": "free", "input": ["abcd", "efgh"]}, headers=AUTH)
        await client.post("/v1/chat/completions", json=chat("free", user="sim:status=500"), headers=AUTH)
        stats = (await client.get("/_stats")).json()
        assert stats["requests_total"] == 4
        assert stats["by_endpoint"] == {"/v1/chat/completions": 3, "/v1/embeddings": 1}
        assert stats["by_status"] == {"200": 3, "500": 1}
        free = stats["by_model"]["free"]
        assert (free["requests"], free["succeeded"], free["failed"]) == (4, 3, 1)
        # Each chat: 3 + 3 + 1 ("user") + 5 ("x" * 40 in cl100k_base) = 12 prompt tokens and its
        # max_tokens of 10 completion tokens; the embeddings: "abcd" 1 token and "efgh" 2.
        assert (free["prompt_tokens"], free["completion_tokens"]) == (12 + 12 + 3, 10 + 10)
        assert stats["usage"] == {"prompt_tokens": 27, "completion_tokens": 20, "total_tokens": 47}
        assert stats["tokens_charged"] == 2 * (12 + 10) + 3
        assert (stats["in_flight"], stats["max_in_flight"]) == (0, 1)
        recent = (await client.get("/_requests?limit=2")).json()["data"]
        assert [call["status"] for call in recent] == [200, 500]
        assert recent[1]["user"] == "sim:status=500"
        by_user = (await client.get("/_requests", params={"user": "sim:status=500"})).json()["data"]
        assert [call["status"] for call in by_user] == [500]
        wanted = {"request_id": by_user[0]["request_id"]}
        by_id = (await client.get("/_requests", params=wanted)).json()["data"]
        assert by_id == by_user
        assert (await client.get("/_stats")).headers["x-request-id"].startswith("req_")
        reset = (await client.post("/_stats/reset")).json()
        assert (reset["requests_total"], reset["by_model"]) == (0, {})

    run(make_app(), scenario)
