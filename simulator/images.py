"""``POST /v1/images/generations``: every image is the same tiny, valid PNG.

- GPT image models (``gpt-image-*``) always answer ``b64_json`` (asking for ``url`` is a 400) and report
  ``usage``: the prompt's text tokens in, and per image the output tokens of the size/quality table.
  ``auto`` size is 1024x1024 and ``auto`` quality medium.
- DALL-E models (and any other model) answer ``url`` by default or ``b64_json`` on request and report no
  usage; ``dall-e-3`` allows only ``n=1`` and adds ``revised_prompt``. URLs point at this server's
  ``/_images/<id>.png``, which serves the PNG.

Admission charges ``n`` images, and for GPT image models the input plus output tokens.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from simulator import params
from simulator.calls import CallContext, CallPlan, Usage, new_id
from simulator.errors import invalid_request, invalid_value
from simulator.png import tiny_png
from simulator.prompt_tokens import count_tokens
from simulator.ratelimit import Charge
from simulator.tokens import image_output_tokens

# family: (sizes, qualities); the first size is the default
_OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gpt-image": (("auto", "1024x1024", "1024x1536", "1536x1024"), ("auto", "low", "medium", "high")),
    "dall-e-3": (("1024x1024", "1792x1024", "1024x1792"), ("standard", "hd", "auto")),
    "dall-e-2": (("1024x1024", "256x256", "512x512"), ("standard", "auto")),
}
_PROMPT_LIMITS = {"gpt-image": 32000, "dall-e-3": 4000, "dall-e-2": 1000}


@lru_cache(maxsize=1)
def tiny_png_base64() -> str:
    return base64.b64encode(tiny_png()).decode("ascii")


def is_gpt_image(model: str) -> bool:
    return model.startswith("gpt-image")


def plan_image_generation(body: Mapping[str, Any], ctx: CallContext) -> CallPlan:
    """Validate an image generation request and plan its answer."""
    params.refuse_stream(body)
    model = ctx.model
    family = (
        "gpt-image" if is_gpt_image(model) else ("dall-e-3" if model.startswith("dall-e-3") else "dall-e-2")
    )
    sizes, qualities = _OPTIONS[family]
    prompt = params.required_string(body, "prompt")
    if len(prompt) > _PROMPT_LIMITS[family]:
        raise invalid_value(
            "prompt",
            f"Invalid 'prompt': string too long. Expected at most {_PROMPT_LIMITS[family]} characters.",
        )
    count = params.optional_int(body, "n", 1, 10) or 1
    if family == "dall-e-3" and count != 1:
        raise invalid_value("n", "Invalid 'n': dall-e-3 only supports n=1.")
    size = params.optional_string(body, "size", sizes) or sizes[0]
    quality = params.optional_string(body, "quality", qualities) or "auto"
    response_format = params.optional_string(body, "response_format", ("url", "b64_json"))
    if family == "gpt-image" and response_format == "url":
        raise invalid_request(
            "Invalid 'response_format': GPT image models always return base64-encoded images (b64_json).",
            "response_format",
            "unsupported_parameter",
        )
    as_base64 = family == "gpt-image" or response_format == "b64_json"
    output_format = params.optional_string(body, "output_format", ("png", "jpeg", "webp")) or "png"
    input_tokens = count_tokens(prompt, ctx.model)
    per_image = image_output_tokens(size, quality) if family == "gpt-image" else 0
    tokens = input_tokens + per_image * count if family == "gpt-image" else 0

    def render() -> tuple[dict[str, Any], Usage]:
        data = [
            _image(ctx.base_url, as_base64, prompt if family == "dall-e-3" else None) for _ in range(count)
        ]
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if family != "gpt-image":
            return answer, Usage(images=count)
        output_tokens = per_image * count
        answer.update(
            background="opaque",
            output_format=output_format,
            size="1024x1024" if size == "auto" else size,
            quality="medium" if quality == "auto" else quality,
            usage={
                "total_tokens": input_tokens + output_tokens,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
            },
        )
        return answer, Usage(input_tokens, output_tokens, count)

    return CallPlan(Charge(tokens=tokens, images=count), render)


def _image(base_url: str, as_base64: bool, revised_prompt: str | None) -> dict[str, Any]:
    image: dict[str, Any] = (
        {"b64_json": tiny_png_base64()} if as_base64 else {"url": f"{base_url}/_images/{new_id('img-')}.png"}
    )
    if revised_prompt is not None:
        image["revised_prompt"] = revised_prompt
    return image
