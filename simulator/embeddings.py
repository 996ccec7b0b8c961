"""``POST /v1/embeddings``: deterministic unit vectors derived from each input and the model.

``input`` is a string, a list of strings, a list of token ids or a list of token-id lists (at most
2048 items). A string costs ``ceil(chars / 4)`` tokens, a token list its length. ``dimensions`` (for
the text-embedding-3 models) shortens the vector, which is then renormalised, as hosted APIs do.
``encoding_format`` ``base64`` packs little-endian float32 values.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from array import array
from collections.abc import Mapping
from typing import Any

from simulator import params
from simulator.calls import CallContext, CallPlan, Usage
from simulator.errors import invalid_request, invalid_type, invalid_value, missing_parameter
from simulator.prompt_tokens import count_tokens
from simulator.ratelimit import Charge

_NATIVE_DIMENSIONS = {
    "text-embedding-3-large": 3072,
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
}
_DEFAULT_DIMENSIONS = 1536
_MAX_INPUTS = 2048


def native_dimensions(model: str) -> int:
    return _NATIVE_DIMENSIONS.get(model, _DEFAULT_DIMENSIONS)


def plan_embeddings(body: Mapping[str, Any], ctx: CallContext) -> CallPlan:
    """Validate an embeddings request and plan its answer."""
    params.refuse_stream(body)
    items = _inputs(body.get("input"))
    native = native_dimensions(ctx.model)
    dimensions = params.optional_int(body, "dimensions", 1, native)
    if dimensions is not None and ctx.model == "text-embedding-ada-002":
        raise invalid_request("This model does not support specifying dimensions.", "dimensions")
    encoding = params.optional_string(body, "encoding_format", ("float", "base64")) or "float"
    tokens = sum(len(item) if isinstance(item, list) else count_tokens(item, ctx.model) for item in items)
    size = dimensions or native

    def render() -> tuple[dict[str, Any], Usage]:
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encode(embedding_vector(ctx.model, item, size), encoding),
            }
            for index, item in enumerate(items)
        ]
        body = {
            "object": "list",
            "data": data,
            "model": ctx.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return body, Usage(prompt_tokens=tokens)

    return CallPlan(Charge(tokens=tokens), render)


def embedding_vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector determined by the model and the input; shorter vectors are renormalised prefixes."""
    seed = f"{model}\x00{item}".encode() if isinstance(item, str) else f"{model}\x00{item!r}".encode()
    raw = hashlib.shake_256(seed).digest(dimensions * 2)
    values = array("h", raw)
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _inputs(value: object) -> list[str | list[int]]:
    if value is None:
        raise missing_parameter("input")
    if isinstance(value, str):
        return [_text_input(value, "input")]
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array", value)
    if not value:
        raise invalid_value("input", "Invalid 'input': empty array. Expected an array with minimum length 1.")
    if len(value) > _MAX_INPUTS:
        raise invalid_value(
            "input", f"Invalid 'input': array too long. Expected at most {_MAX_INPUTS} items."
        )
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [list(value)]
    items: list[str | list[int]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if isinstance(item, str):
            items.append(_text_input(item, where))
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(t, int) and not isinstance(t, bool) for t in item)
        ):
            items.append(list(item))
        else:
            raise invalid_type(where, "a string or an array of integers", item)
    return items


def _text_input(text: str, where: str) -> str:
    if not text:
        raise invalid_value(
            where, f"Invalid '{where}': empty string. Expected a string with minimum length 1."
        )
    return text
