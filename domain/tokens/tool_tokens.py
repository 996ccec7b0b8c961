"""Prompt tokens of function definitions, counted as OpenAI's cookbook counts them.

The hosted APIs render function tools into the prompt as a compact TypeScript-like block, not as JSON.
OpenAI's published recipe ("How to count tokens with tiktoken") counts that block from the parts that
reach it, with fixed figures per encoding family:

- each function: ``FUNCTION_START`` (7 on o200k_base models, 10 on cl100k_base ones) plus the tokens of
  ``"name:description"`` (a trailing period of the description dropped);
- when it has properties: 3, then per property 3 plus the tokens of ``"key:type:description"``;
  a property with an ``enum`` adds -3, then 3 plus the value's tokens per enum value;
- 12 once at the end of the function block.

What the recipe leaves out is counted as compact JSON, so that it is never free: a property's other
keywords (``items``, nested ``properties``...), and tools that are not functions (``web_search``,
``file_search``...). Chat tools wrap the function (``{"type": "function", "function": {...}}``); the
Responses API and the legacy ``functions`` parameter give it flat. Nothing here trusts the shape of its
input: a field of the wrong type counts as absent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from domain.tokens.text import O200K

__all__ = ["FUNCTION_START", "function_block_tokens", "json_text"]

FUNCTION_START = {O200K: 7}
"""Tokens that open each function, by encoding; 10 for encodings not listed."""
_FUNCTION_START_DEFAULT = 10
_PROPERTIES_START = 3
_PROPERTY = 3
_ENUM_START = -3
_ENUM_ITEM = 3
_FUNCTIONS_END = 12
_RECIPE_KEYS = frozenset({"type", "description", "enum"})

Count = Callable[[str], int]


def json_text(value: object) -> str:
    """Compact JSON of ``value``, or "" when it cannot be serialised."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return ""


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json_text(value)


def _property_tokens(key: str, spec: Mapping[str, Any], count: Count) -> int:
    total = _PROPERTY
    enum = spec.get("enum")
    if isinstance(enum, list):
        total += _ENUM_START + sum(_ENUM_ITEM + count(_as_text(item)) for item in enum)
    description = _as_text(spec.get("description")).removesuffix(".")
    total += count(f"{key}:{_as_text(spec.get('type'))}:{description}")
    rest = {name: value for name, value in spec.items() if name not in _RECIPE_KEYS}
    return total + (count(json_text(rest)) if rest else 0)


def _function_tokens(function: Mapping[str, Any], start: int, count: Count) -> int:
    description = _as_text(function.get("description")).removesuffix(".")
    total = start + count(f"{_as_text(function.get('name'))}:{description}")
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    if isinstance(properties, Mapping) and properties:
        total += _PROPERTIES_START
        for key, spec in properties.items():
            total += _property_tokens(str(key), spec if isinstance(spec, Mapping) else {}, count)
    return total


def _function_of(tool: object, *, wrapped: bool) -> Mapping[str, Any] | None:
    """The function definition inside ``tool``, or None when ``tool`` is not a function tool."""
    if not isinstance(tool, Mapping):
        return None
    if not wrapped:
        return tool if tool.get("type", "function") == "function" else None
    function = tool.get("function")
    return function if tool.get("type") == "function" and isinstance(function, Mapping) else None


def function_block_tokens(tools: object, encoding: str, count: Count, *, wrapped: bool) -> int:
    """Prompt tokens of a ``tools`` (or ``functions``) list; ``wrapped`` for chat's nested shape."""
    if not isinstance(tools, list) or not tools:
        return 0
    start = FUNCTION_START.get(encoding, _FUNCTION_START_DEFAULT)
    total = 0
    functions = 0
    for tool in tools:
        function = _function_of(tool, wrapped=wrapped)
        if function is None:
            total += count(json_text(tool))
        else:
            functions += 1
            total += _function_tokens(function, start, count)
    return total + (_FUNCTIONS_END if functions else 0)
