"""What a job costs the rate limiter: an estimate before the call, the real figure after it.

``estimate_cost`` is what the limiter reserves before the upstream call, counted the way hosted
providers count at admission: the prompt's tokens plus the most the reply may take (``max_tokens`` or
``max_completion_tokens`` times ``n``, ``max_output_tokens`` for the Responses API), with input images
counted by ``domain.tokens.images`` and generated images by count. ``actual_cost`` is what the call
really consumed, read from the upstream ``usage`` object; the limiter settles the difference.
``usage_columns`` normalises the usage shapes of every endpoint into the columns stored for reports.

Prompt tokens are counted per message as OpenAI's cookbook counts chat: the text of each field (the
role included), 3 tokens of framing per message (one more when it has a ``name``) and 3 that prime the
reply. Fields that are not text (``tool_calls``, audio and file parts, Responses function calls) count
as their compact JSON. Function tools and ``functions`` follow the cookbook's recipe
(``domain.tokens.tool_tokens``); other tools, ``response_format`` and the Responses ``text`` setting
count as compact JSON. Responses ``instructions`` count as one more message, and a string ``input`` as a
user message. Text is counted exactly, offline, by ``domain.tokens.text``.

Every request and usage object comes from outside, so nothing here trusts its shape: a field of the
wrong type counts as absent, and no input makes these functions raise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.tokens.images import image_generation_output_tokens, image_input_tokens
from domain.tokens.text import count_text_tokens, encoding_name_for_model
from domain.tokens.tool_tokens import function_block_tokens, json_text

__all__ = ["Cost", "UsageColumns", "actual_cost", "estimate_cost", "usage_columns"]

TOKENS_PER_MESSAGE = 3
"""Framing tokens around each message."""
TOKENS_PER_NAME = 1
"""Extra token for a message that carries a ``name``."""
REPLY_PRIMING_TOKENS = 3
"""Tokens that start the assistant's reply."""

_MAX_COUNT = 10**15
"""Counts from outside are clamped to this, far above any real figure."""

_TEXT_PART_KEYS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}
_IMAGE_PART_TYPES = frozenset({"image_url", "input_image"})


@dataclass(frozen=True, slots=True)
class Cost:
    """Requests, tokens and images that one call takes from a model's budget."""

    requests: int = 1
    tokens: int = 0
    images: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.requests + other.requests, self.tokens + other.tokens, self.images + other.images)

    def __sub__(self, other: Cost) -> Cost:
        return Cost(self.requests - other.requests, self.tokens - other.tokens, self.images - other.images)


@dataclass(frozen=True, slots=True)
class UsageColumns:
    """An upstream ``usage`` object flattened into the columns stored with a job."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    images: int = 0


def _count(value: object) -> int | None:
    """A non-negative whole number from outside, clamped; None when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return None
    return min(value, _MAX_COUNT)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True, slots=True)
class _Counter:
    """Counts prompt tokens for one model."""

    model: object
    encoding: str

    def text(self, value: object) -> int:
        return count_text_tokens(value, self.encoding) if isinstance(value, str) else 0

    def json(self, value: object) -> int:
        return 0 if value is None else self.text(json_text(value))

    def image(self, part: Mapping[str, Any]) -> int:
        """A chat ``image_url`` part (``{"url", "detail"}`` inside) or a Responses ``input_image`` part."""
        reference = part.get("image_url")
        detail = part.get("detail")
        if isinstance(reference, Mapping):
            detail = reference.get("detail", detail)
            reference = reference.get("url")
        return image_input_tokens(self.model, reference, detail)

    def content(self, content: object) -> int:
        """A message's content: a string, or a list of text, image and other parts."""
        if isinstance(content, str):
            return self.text(content)
        if isinstance(content, Mapping):
            content = [content]
        if not isinstance(content, list):
            return 0
        total = 0
        for part in content:
            if isinstance(part, str):
                total += self.text(part)
                continue
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in _TEXT_PART_KEYS:
                total += self.text(part.get(_TEXT_PART_KEYS[kind]))
            elif kind in _IMAGE_PART_TYPES:
                total += self.image(part)
            else:
                total += self.json(part)
        return total

    def message(self, message: object) -> int:
        """One chat message or Responses message item, framing included."""
        total = TOKENS_PER_MESSAGE
        for key, value in _mapping(message).items():
            if key == "content":
                total += self.content(value)
            elif key == "name":
                total += TOKENS_PER_NAME + self.text(value)
            elif key != "type" and isinstance(value, str):
                total += self.text(value)
            elif key != "type":
                total += self.json(value)
        return total

    def functions(self, tools: object, *, wrapped: bool) -> int:
        return function_block_tokens(tools, self.encoding, self.text, wrapped=wrapped)


def _counter(request: Mapping[str, Any]) -> _Counter:
    model = request.get("model")
    return _Counter(model=model, encoding=encoding_name_for_model(model))


def _chat_prompt(request: Mapping[str, Any]) -> int:
    counter = _counter(request)
    messages = request.get("messages")
    prompt = REPLY_PRIMING_TOKENS
    prompt += sum(counter.message(item) for item in messages) if isinstance(messages, list) else 0
    prompt += counter.functions(request.get("tools"), wrapped=True)
    prompt += counter.functions(request.get("functions"), wrapped=False)
    return prompt + counter.json(request.get("response_format"))


def _chat_limit(request: Mapping[str, Any]) -> int | None:
    limit = _count(request.get("max_completion_tokens"))
    return _count(request.get("max_tokens")) if limit is None else limit


def _chat_tokens(request: Mapping[str, Any], default_max_tokens: int) -> int:
    limit = _chat_limit(request)
    choices = _count(request.get("n")) or 1
    return _chat_prompt(request) + (default_max_tokens if limit is None else limit) * choices


def _response_item_tokens(counter: _Counter, item: object) -> int:
    if isinstance(item, Mapping) and "content" in item:
        return counter.message(item)
    return counter.json(item)  # function calls, their outputs, reasoning items, ...


def _response_prompt(request: Mapping[str, Any]) -> int:
    counter = _counter(request)
    given = request.get("input")
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    items = given if isinstance(given, list) else []
    instructions = request.get("instructions")
    prompt = REPLY_PRIMING_TOKENS
    if isinstance(instructions, str) and instructions:
        prompt += TOKENS_PER_MESSAGE + counter.text(instructions)
    prompt += sum(_response_item_tokens(counter, item) for item in items)
    return prompt + counter.functions(request.get("tools"), wrapped=False) + counter.json(request.get("text"))


def _response_tokens(request: Mapping[str, Any], default_max_tokens: int) -> int:
    limit = _count(request.get("max_output_tokens"))
    return _response_prompt(request) + (default_max_tokens if limit is None else limit)


@dataclass(frozen=True, slots=True)
class WindowNeed:
    """What one call puts in the model's context window: the prompt, and the reply it asks room for
    (0 when it sets no limit: the model then writes what fits)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def window_need(kind: str, request: Mapping[str, Any]) -> WindowNeed | None:
    """The tokens a chat, vision or Responses call holds in its context window; None for other kinds
    and for a body too odd to count (validation refuses those elsewhere)."""
    body = _mapping(request)
    try:
        if kind in ("chat", "vision"):
            return WindowNeed(_chat_prompt(body), _chat_limit(body) or 0)
        if kind == "response":
            return WindowNeed(_response_prompt(body), _count(body.get("max_output_tokens")) or 0)
    except Exception:  # the contract is to never raise on a body from outside
        return None
    return None


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _embedding_tokens(request: Mapping[str, Any]) -> int:
    """A string, a list of strings, a token array, or a list of token arrays."""
    counter = _counter(request)
    given = request.get("input")
    if isinstance(given, str):
        return counter.text(given)
    if not isinstance(given, list):
        return 0
    total = 0
    for item in given:
        if isinstance(item, str):
            total += counter.text(item)
        elif _is_token(item):
            total += 1
        elif isinstance(item, list):
            total += sum(1 for token in item if _is_token(token))
    return total


def _image_cost(request: Mapping[str, Any]) -> Cost:
    """``n`` images; gpt-image models also take the prompt's tokens and each image's output tokens."""
    images = _count(request.get("n")) or 1
    model = request.get("model")
    per_image = image_generation_output_tokens(model, request.get("size"), request.get("quality"))
    if per_image == 0:
        return Cost(tokens=0, images=images)
    return Cost(tokens=_counter(request).text(request.get("prompt")) + per_image * images, images=images)


def estimate_cost(kind: str, request: Mapping[str, Any], *, default_max_tokens: int = 1024) -> Cost:
    """The cost to reserve before sending ``request`` (an OpenAI request body) for a job of ``kind``.

    ``kind`` is chat, vision, embedding, image or response; any other kind is read as a chat body.
    ``default_max_tokens`` stands for the reply when the request sets no limit. A body too odd to read
    at all is charged one request and ``default_max_tokens`` tokens.
    """
    fallback = _count(default_max_tokens) or 0
    body = _mapping(request)
    try:
        if kind == "embedding":
            return Cost(tokens=_embedding_tokens(body))
        if kind == "image":
            return _image_cost(body)
        if kind == "response":
            return Cost(tokens=_response_tokens(body, fallback))
        return Cost(tokens=_chat_tokens(body, fallback))
    except Exception:  # the contract is to never raise on a body from outside
        return Cost(tokens=fallback)


def _first_count(usage: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        found = _count(usage.get(key))
        if found is not None:
            return found
    return None


def _detail_count(usage: Mapping[str, Any], field: str, *details: str) -> int:
    for detail in details:
        found = _count(_mapping(usage.get(detail)).get(field))
        if found is not None:
            return found
    return 0


def usage_columns(kind: str, usage: Mapping[str, Any] | None, *, images: int = 0) -> UsageColumns:
    """Flatten ``usage`` from any endpoint; ``images`` is the number of images the call returned.

    The shapes are told apart by their fields, so ``kind`` only documents the caller's intent:
    chat and embeddings report ``prompt_tokens``/``completion_tokens``, images and the Responses API
    ``input_tokens``/``output_tokens``; ``total_tokens`` defaults to their sum, and the cached and
    reasoning details are optional everywhere. Missing or malformed fields count as 0.
    """
    del kind
    body = _mapping(usage)
    prompt = _first_count(body, "prompt_tokens", "input_tokens") or 0
    completion = _first_count(body, "completion_tokens", "output_tokens") or 0
    total = _count(body.get("total_tokens"))
    return UsageColumns(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion if total is None else total,
        cached_tokens=_detail_count(body, "cached_tokens", "prompt_tokens_details", "input_tokens_details"),
        reasoning_tokens=_detail_count(
            body, "reasoning_tokens", "completion_tokens_details", "output_tokens_details"
        ),
        images=_count(images) or 0,
    )


def actual_cost(kind: str, usage: Mapping[str, Any] | None, *, images: int = 0) -> Cost:
    """What the call consumed: one request, the usage's total tokens (0 without usage), ``images``."""
    columns = usage_columns(kind, usage, images=images)
    return Cost(tokens=columns.total_tokens, images=columns.images)
