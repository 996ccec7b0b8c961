"""The simulator as a real process, driven by the official ``openai`` SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from simulator.png import tiny_png
from simulator.process import running_simulator
from simulator.prompt_tokens import count_tokens

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

[tiers.embed.models."text-embedding-3-large"]
rpm = 60000
tpm = 10000000

[tiers.img.models."gpt-image-1"]
rpm = 6000
tpm = 10000000
ipm = 6000
"""


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tiers = tmp_path_factory.mktemp("sim-sdk") / "tiers.toml"
    tiers.write_text(TIERS)
    with running_simulator(["--tiers", str(tiers), "--require-key", "sk-test", "--seed", "2"]) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[OpenAI]:
    sdk = OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=10)
    with sdk:
        yield sdk


def test_chat_completions(client: OpenAI) -> None:
    image = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    completion = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is it?"},
                    {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
                ],
            },
        ],
        n=2,
        max_tokens=100,
    )
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 2
    assert completion.choices[0].message.content
    assert completion.usage is not None
    # 3 priming; each message 3 framing + its role + its text; the 8x8 image at high detail 85 + 170
    text = count_tokens("system", "gpt-4o") + count_tokens("Be brief.", "gpt-4o")
    text += count_tokens("user", "gpt-4o") + count_tokens("What is it?", "gpt-4o")
    assert completion.usage.prompt_tokens == 3 + 2 * 3 + text + 255
    assert completion.usage.completion_tokens == 2 * (8 + completion.usage.prompt_tokens // 4)


def test_tools_and_structured_output(client: OpenAI) -> None:
    parameters = {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
        "required": ["query", "limit"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model="gpt-5-mini",
        messages=[{"role": "user", "content": "search"}],
        tools=[{"type": "function", "function": {"name": "search", "parameters": parameters}}],
        tool_choice={"type": "function", "function": {"name": "search"}},
    )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    assert json.loads(calls[0].function.arguments) == {"query": "sim", "limit": 1}
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    assert (completion.usage.completion_tokens_details.reasoning_tokens or 0) > 0
    structured = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "reply"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "q", "schema": parameters, "strict": True},
        },
    )
    assert json.loads(structured.choices[0].message.content or "") == {"query": "sim", "limit": 1}


def test_embeddings_images_and_responses(client: OpenAI) -> None:
    floats = client.embeddings.create(
        model="text-embedding-3-large", input=["one", "two"], encoding_format="float"
    )
    packed = client.embeddings.create(model="text-embedding-3-large", input=["one", "two"], dimensions=256)
    assert [len(item.embedding) for item in floats.data] == [3072, 3072]
    assert [len(item.embedding) for item in packed.data] == [256, 256]
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 2
    images = client.images.generate(
        model="gpt-image-1", prompt="a lighthouse", size="1536x1024", quality="low"
    )
    assert images.data is not None and images.data[0].b64_json
    assert base64.b64decode(images.data[0].b64_json) == tiny_png()
    assert images.usage is not None and images.usage.output_tokens == 400
    response = client.responses.create(
        model="gpt-4o", input="Say hi", instructions="Be kind.", max_output_tokens=64
    )
    assert response.status == "completed"
    assert response.output_text
    # 3 priming; the instructions 3 + their text; the input a user message: 3 + "user" + its text
    instructions = 3 + count_tokens("Be kind.", "gpt-4o")
    message = 3 + count_tokens("user", "gpt-4o") + count_tokens("Say hi", "gpt-4o")
    assert response.usage is not None and response.usage.input_tokens == 3 + instructions + message


def test_sdk_errors(client: OpenAI, base_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="gpt-404", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o", messages=[])
    assert bad.value.param == "messages"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], user="sim:status=502"
        )
    with pytest.raises(openai.RateLimitError) as quota:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], user="sim:quota"
        )
    assert quota.value.code == "insufficient_quota"
    with OpenAI(base_url=base_url + "/v1", api_key="sk-wrong", max_retries=0, timeout=10) as stranger:
        with pytest.raises(openai.AuthenticationError) as denied:
            stranger.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert denied.value.code == "invalid_api_key"


def test_rate_limit_error_carries_retry_after(client: OpenAI) -> None:
    client.chat.completions.create(
        model="slow-lane", messages=[{"role": "user", "content": "x"}], max_tokens=5
    )
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(
            model="slow-lane", messages=[{"role": "user", "content": "x"}], max_tokens=5
        )
    assert limited.value.code == "rate_limit_exceeded"
    headers = limited.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
