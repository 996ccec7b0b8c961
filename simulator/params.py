"""Reading request parameters with OpenAI's 400 messages for missing, mistyped and invalid values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from simulator.errors import invalid_request, invalid_type, invalid_value, missing_parameter

Body = Mapping[str, Any]


def required_string(body: Body, name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing_parameter(name)
    if not isinstance(value, str):
        raise invalid_type(name, "a string", value)
    if not value:
        raise invalid_value(name, f"Invalid '{name}': empty string. Expected a string with minimum length 1.")
    return value


def optional_string(body: Body, name: str, choices: Iterable[str] | None = None) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_type(name, "a string", value)
    if choices is not None:
        allowed = tuple(choices)
        if value not in allowed:
            listed = ", ".join(f"'{choice}'" for choice in allowed)
            raise invalid_value(name, f"Invalid value: '{value}'. Supported values are: {listed}.")
    return value


def optional_int(body: Body, name: str, minimum: int, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(name, "an integer", value)
    if value < minimum:
        raise invalid_value(
            name,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, but got {value}.",
        )
    if maximum is not None and value > maximum:
        raise invalid_value(
            name,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, but got {value}.",
        )
    return value


def optional_bool(body: Body, name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid_type(name, "a boolean", value)
    return value


def optional_object(body: Body, name: str) -> Mapping[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise invalid_type(name, "an object", value)
    return value


def optional_list(body: Body, name: str) -> list[Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid_type(name, "an array", value)
    return value


def optional_number(body: Body, name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_type(name, "a number", value)
    return float(value)


def completion_cap(body: Body, names: tuple[str, ...], default: int) -> int:
    """The first completion cap present among ``names`` (each a positive integer), else ``default``."""
    for name in names:
        value = optional_int(body, name, 1)
        if value is not None:
            return value
    return default


def refuse_stream(body: Body) -> None:
    """Endpoints that never stream (embeddings, images here) refuse ``stream: true`` as hosted APIs do."""
    if optional_bool(body, "stream"):
        raise invalid_request(
            "Unsupported parameter: 'stream' is not supported with this endpoint.",
            "stream",
            "unsupported_parameter",
        )
