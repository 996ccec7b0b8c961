"""What every endpoint handler shares: the call context, the plan it returns, ids and generated output."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from simulator.prompt_cache import PromptCache
from simulator.ratelimit import Charge
from simulator.schema_fill import minimal_instance

_FILLER = "This is a simulated reply from the batchery simulator. "


@dataclass(frozen=True, slots=True)
class Usage:
    """What a success body reports, summed into the statistics (images: generated images)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows besides the body: the model, defaults and where the server is reached."""

    model: str
    default_max_tokens: int
    prompt_cache: PromptCache
    base_url: str


@dataclass(frozen=True, slots=True)
class StreamFrame:
    """One Server-Sent Event, encoded; ``is_delta`` marks a content or argument delta."""

    data: bytes
    is_delta: bool = False


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """How a streamed call is put on the wire: its frames from the success body, and a mid-stream failure.

    ``error_frame`` gets the number of frames already sent (the Responses API numbers its events).
    """

    frames: Callable[[dict[str, Any]], list[StreamFrame]]
    error_frame: Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class CallPlan:
    """A validated call: what it costs at admission, how to build its success body, and whether it streams."""

    charge: Charge
    render: Callable[[], tuple[dict[str, Any], Usage]]
    stream: StreamPlan | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """The kind of answer: text, JSON (with an optional schema) or a call of a named function."""

    kind: Literal["text", "json", "tool"]
    schema: object | None = None
    function: str | None = None
    parameters: object | None = None


@dataclass(slots=True)
class PromptScan:
    """What a request's prompt adds up to while it is being validated."""

    image_tokens: int = 0
    mentions_json: bool = False


def new_id(prefix: str) -> str:
    """A fresh object id such as ``chatcmpl-5f0c...``."""
    return prefix + os.urandom(12).hex()


def reply_text(tokens: int) -> str:
    """Deterministic filler text of about ``tokens`` tokens (four characters each)."""
    length = tokens * 4
    repeats = length // len(_FILLER) + 1
    return (_FILLER * repeats)[:length].rstrip() if length else ""


def json_reply(schema: object | None, tokens: int) -> str:
    """Valid JSON: the minimal instance of ``schema``, or for plain JSON mode an object with filler text."""
    if schema is not None:
        return json.dumps(minimal_instance(schema), separators=(",", ":"))
    return json.dumps({"reply": reply_text(tokens)}, separators=(",", ":"))


def tool_arguments(parameters: object) -> str:
    """Arguments of a generated function call: the minimal instance of its parameters schema."""
    value = minimal_instance(parameters) if parameters is not None else {}
    return json.dumps(value if value is not None else {}, separators=(",", ":"))


def compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
