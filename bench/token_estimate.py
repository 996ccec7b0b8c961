"""How close the admission estimate is to what the upstream reports, and what the estimate costs.

Usage: ``python -m bench.token_estimate [--requests 10000] [--seed 7]``

A seeded, mixed workload (chat in Korean, Japanese, English, Python code, emoji and mixtures, with
system prompts, names, tool calls and tool results, function tools, JSON schemas; vision with data-URI
images of many sizes and details; the Responses API; embeddings; on o200k_base and cl100k_base models)
is estimated the way the limiter estimates it, then sent to a real simulator process, whose
``usage.prompt_tokens`` (``input_tokens`` for the Responses API) is the truth. The error is
``(estimated prompt - reported prompt) / reported prompt`` per request. The baseline, in the same run,
is the same estimator counting text at 4 bytes of UTF-8 per token, which is what every deployment ran
on before the encodings were bundled. The cost is the wall time (and the thread's CPU time, which the
machine's other tenants do not inflate) of ``estimate_cost`` per request, measured one request at a
time after the encodings are loaded; their load time is printed too.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.harness import save
from domain.tokens import text as token_text
from domain.tokens.estimates import estimate_cost
from simulator.process import running_simulator

CHAT_MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-5-nano",
    "o3",
    "gpt-4",
    "gpt-3.5-turbo",
]
EMBEDDING_MODEL = "text-embedding-3-small"
REASONING = ("o", "gpt-5")

KOREAN = [
    "안녕하세요. 오늘은 배치 작업 대기열에 대해 이야기해 보겠습니다.",
    "요청 한도를 넘지 않도록 토큰 수를 미리 세는 것이 중요합니다.",
    "서울의 날씨는 맑고, 기온은 섭씨 21도입니다.",
    "이 문서는 한국어 안내서의 번역본입니다. 질문이 있으면 언제든지 연락 주세요!",
]
JAPANESE = [
    "東京は今日も晴れです。バッチ処理のキューを設計しましょう。",
    "トークン数を正確に数えることが、レート制限を守る鍵です。",
    "ひらがな、カタカナ、漢字が混ざった文章です。",
]
ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Rate limits are enforced per model, in requests and tokens per minute.",
    "We'll ship v2.0.1 tomorrow at 3:45pm — don't forget the release notes.",
    "Summarise the following customer review in two sentences, keeping the tone neutral.",
]
CODE = [
    'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n',
    "    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n",
    "SELECT id, status FROM jobs WHERE tenant_id = $1 AND created_at > now() - interval '1 day';\n",
    "const total = items.reduce((sum, item) => sum + item.price * item.qty, 0);\n",
]
EMOJI = ["🎉🚀✨", "👨‍👩‍👧‍👦", "🇰🇷🇯🇵", "👍🏽 great!", "❤️‍🔥🔥", "😀😂🤔"]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "review",
        "schema": {
            "type": "object",
            "properties": {"summary": {"type": "string"}, "stars": {"type": "integer"}},
            "required": ["summary", "stars"],
        },
    },
}


def _images() -> list[str]:
    sizes = [(64, 64), (512, 512), (1024, 1024), (1280, 720), (2048, 4096), (1800, 2400), (300, 200)]
    urls = []
    for width, height in sizes:
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (30, 90, 160)).save(buffer, "PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls


class Workload:
    """Seeded request bodies of every kind, as ``(kind, path, body, reply budget)``."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.images = _images()

    def text(self, low: int, high: int) -> str:
        pools = [KOREAN, JAPANESE, ENGLISH, CODE, EMOJI]
        style = self.random.randrange(6)  # one language, or (5) a mixture of all of them
        pieces: list[str] = []
        target = self.random.randint(low, high)
        while sum(map(len, pieces)) < target:
            pool = pools[self.random.randrange(5)] if style == 5 else pools[style]
            pieces.append(self.random.choice(pool))
        return " ".join(pieces)

    def chat(self) -> tuple[str, str, dict[str, Any], int]:
        model = self.random.choice(CHAT_MODELS)
        messages: list[dict[str, Any]] = []
        if self.random.random() < 0.6:
            messages.append({"role": "system", "content": self.text(20, 300)})
        user: dict[str, Any] = {"role": "user", "content": self.text(20, 3000)}
        if self.random.random() < 0.2:
            user["name"] = self.random.choice(["minji", "haruto", "alice"])
        messages.append(user)
        body: dict[str, Any] = {"model": model, "messages": messages}
        if self.random.random() < 0.25:
            body["tools"] = [TOOL]
            if self.random.random() < 0.5:
                call = {"name": "get_weather", "arguments": '{"city": "서울"}'}
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c1", "type": "function", "function": call}],
                    }
                )
                messages.append({"role": "tool", "tool_call_id": "c1", "content": '{"temperature": 21}'})
        elif self.random.random() < 0.15:
            body["response_format"] = SCHEMA
        budget = self.random.choice([16, 64, 256, 1024])
        body["max_completion_tokens" if model.startswith(REASONING) else "max_tokens"] = budget
        return "chat", "/v1/chat/completions", body, budget

    def vision(self) -> tuple[str, str, dict[str, Any], int]:
        model = self.random.choice(["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3"])
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.text(20, 400)}]
        for _ in range(self.random.randint(1, 3)):
            image = {
                "url": self.random.choice(self.images),
                "detail": self.random.choice(["low", "high", "auto"]),
            }
            parts.append({"type": "image_url", "image_url": image})
        key = "max_completion_tokens" if model.startswith(REASONING) else "max_tokens"
        body = {"model": model, "messages": [{"role": "user", "content": parts}], key: 200}
        return "vision", "/v1/chat/completions", body, 200

    def response(self) -> tuple[str, str, dict[str, Any], int]:
        model = self.random.choice(["gpt-4o", "gpt-4.1-mini", "o3"])
        body: dict[str, Any] = {"model": model, "input": self.text(20, 2000), "max_output_tokens": 300}
        if self.random.random() < 0.5:
            body["instructions"] = self.text(10, 200)
        if self.random.random() < 0.3:
            body["tools"] = [{"type": "function", **TOOL["function"]}]
        return "response", "/v1/responses", body, 300

    def embedding(self) -> tuple[str, str, dict[str, Any], int]:
        inputs = [self.text(10, 800) for _ in range(self.random.randint(1, 4))]
        return "embedding", "/v1/embeddings", {"model": EMBEDDING_MODEL, "input": inputs}, 0

    def requests(self, count: int) -> Iterator[tuple[str, str, dict[str, Any], int]]:
        makers: list[Callable[[], tuple[str, str, dict[str, Any], int]]] = [
            self.chat,
            self.vision,
            self.response,
            self.embedding,
        ]
        for _ in range(count):
            yield self.random.choices(makers, weights=[70, 10, 10, 10])[0]()


def _tiers() -> str:
    models = [("chat", name) for name in {*CHAT_MODELS, "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3"}]
    models.append(("embed", EMBEDDING_MODEL))
    return "".join(
        f'[tiers.{tier}.models."{name}"]\nrpm = 1000000\ntpm = 1000000000\n' for tier, name in models
    )


@contextmanager
def heuristic_text_counting() -> Iterator[None]:
    """Count text at 4 bytes per token, as every deployment did without a tiktoken cache."""
    original = token_text.load_counter
    token_text.load_counter = lambda encoding_name: None  # type: ignore[assignment]
    try:
        yield
    finally:
        token_text.load_counter = original


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def timed_estimates(
    work: list[tuple[str, str, dict[str, Any], int]],
) -> tuple[list[int], list[float], list[float]]:
    """Each request's estimated prompt, and the wall and CPU milliseconds its estimate took."""
    prompts, wall, cpu = [], [], []
    for kind, _, body, budget in work:
        started, started_cpu = time.perf_counter(), time.thread_time()
        tokens = estimate_cost(kind, body).tokens
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
        prompts.append(tokens - budget * int(body.get("n", 1)))
    return prompts, wall, cpu


def timing(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "mean": statistics.fmean(values)}


def summary(errors: list[float]) -> dict[str, float]:
    magnitudes = [abs(error) for error in errors]
    return {
        "p50_abs_pct": 100 * percentile(magnitudes, 0.5),
        "p99_abs_pct": 100 * percentile(magnitudes, 0.99),
        "max_abs_pct": 100 * max(magnitudes),
        "mean_signed_pct": 100 * statistics.fmean(errors),
        "exact_share_pct": 100 * sum(1 for error in errors if error == 0) / len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()

    started = time.perf_counter()
    token_text.warm_up()
    load_ms = (time.perf_counter() - started) * 1000
    work = list(Workload(options.seed).requests(options.requests))
    load_before = os.getloadavg()[0]
    prompts, costs, cpu = timed_estimates(work)
    with heuristic_text_counting():
        old_prompts, old_costs, old_cpu = timed_estimates(work)
    load_after = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as folder:
        tiers = Path(folder) / "tiers.toml"
        tiers.write_text(_tiers())
        with (
            running_simulator(["--tiers", str(tiers), "--no-limits"]) as url,
            httpx.Client(base_url=url, headers={"authorization": "Bearer sk-bench"}, timeout=30) as client,
        ):
            reported = []
            for _, path, body, _ in work:
                response = client.post(path, json=body)
                response.raise_for_status()
                usage = response.json()["usage"]
                reported.append(usage.get("prompt_tokens", usage.get("input_tokens")))

    errors = [(mine - real) / real for mine, real in zip(prompts, reported, strict=True)]
    old_errors = [(mine - real) / real for mine, real in zip(old_prompts, reported, strict=True)]
    kinds = sorted({kind for kind, *_ in work})
    record = {
        "requests": len(work),
        "by_kind": {kind: sum(1 for k, *_ in work if k == kind) for kind in kinds},
        "encodings_load_ms": load_ms,
        "error": summary(errors),
        "baseline_error": summary(old_errors),
        "estimate_ms": timing(costs),
        "estimate_cpu_ms": timing(cpu),
        "baseline_estimate_ms": timing(old_costs),
        "baseline_estimate_cpu_ms": timing(old_cpu),
        "load_average_1m": [load_before, load_after],
        "mean_prompt_tokens": statistics.fmean(reported),
    }
    for kind in kinds:
        chosen = [index for index, (k, *_) in enumerate(work) if k == kind]
        record[f"baseline_error_{kind}"] = summary([old_errors[index] for index in chosen])
        record[f"estimate_ms_{kind}"] = timing([costs[index] for index in chosen])
    print(f"{len(work)} requests {record['by_kind']}, mean prompt {record['mean_prompt_tokens']:.0f} tokens")
    print(f"encodings loaded in {load_ms:.0f} ms")
    for name in ("error", "baseline_error"):
        figures = record[name]
        print(
            f"{name:>15}: |error| p50 {figures['p50_abs_pct']:.2f} %, p99 {figures['p99_abs_pct']:.2f} %, "
            f"max {figures['max_abs_pct']:.2f} %, mean signed {figures['mean_signed_pct']:+.2f} %, "
            f"exact {figures['exact_share_pct']:.1f} % of requests"
        )
    for kind in kinds:
        figures = record[f"baseline_error_{kind}"]
        kind_ms = record[f"estimate_ms_{kind}"]
        print(
            f"  {kind:>9}: baseline |error| p99 {figures['p99_abs_pct']:.1f} %, "
            f"mean signed {figures['mean_signed_pct']:+.1f} %; estimate p50 {kind_ms['p50']:.3f} ms, "
            f"p99 {kind_ms['p99']:.3f} ms"
        )
    print(f"1-minute load average {load_before:.2f} before the timed estimates, {load_after:.2f} after")
    for name in ("estimate_ms", "estimate_cpu_ms", "baseline_estimate_ms", "baseline_estimate_cpu_ms"):
        figures = record[name]
        print(
            f"{name:>20}: p50 {figures['p50']:.3f} ms, p99 {figures['p99']:.3f} ms, "
            f"mean {figures['mean']:.3f} ms"
        )
    print(f"saved {save('token_estimate', record)}")


if __name__ == "__main__":
    main()
