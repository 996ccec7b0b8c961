"""A streamed upstream answer, aggregated into the object the same call answers when not streamed.

Chat (``chat.completion.chunk`` events, OpenAI's wire format): each choice's deltas are joined by
index (content, refusal, tool calls by their own index, logprobs), the last chunk's ``finish_reason``
kept, and the ``usage`` of the final chunk (``stream_options.include_usage``) becomes the result's
usage, so the stored tokens are the upstream's own count. Responses (typed events): the
``response.completed`` (or ``.incomplete`` / ``.failed``) event carries the whole Response object.

An error event in the stream (chat's ``{"error": {...}}`` data, Responses' ``error`` event) raises
``StreamFailed`` with the upstream's error body. A stream that ends before its end (no finishing
chunk, no completed event) raises ``StreamIncomplete``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from domain.errors import BatcheryError

_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class StreamFailed(BatcheryError):
    """The upstream sent an error event in the middle of a stream."""

    def __init__(self, body: dict[str, Any]) -> None:
        error = body.get("error")
        detail: dict[str, Any] = error if isinstance(error, dict) else body
        super().__init__(str(detail.get("message") or "the upstream's stream ended with an error"))
        self.body = {"error": detail}


class StreamIncomplete(BatcheryError):
    """The stream ended before its final event."""


@dataclass(slots=True)
class _ToolCall:
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: str = ""

    def out(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    logprobs: dict[str, list[Any]] | None = None
    finish_reason: str | None = None

    def add(self, delta: dict[str, Any]) -> None:
        self.role = delta.get("role") or self.role
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            self.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            held = self.tool_calls.setdefault(int(call.get("index", len(self.tool_calls))), _ToolCall())
            held.id = call.get("id") or held.id
            held.type = call.get("type") or held.type
            function = call.get("function") or {}
            held.name += function.get("name") or ""
            held.arguments += function.get("arguments") or ""

    def add_logprobs(self, logprobs: dict[str, Any]) -> None:
        merged = self.logprobs if self.logprobs is not None else {}
        for key, items in logprobs.items():
            if isinstance(items, list):
                merged.setdefault(key, []).extend(items)
        self.logprobs = merged

    def out(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.content) if self.content and not self.tool_calls else None,
            "refusal": "".join(self.refusal) if self.refusal else None,
        }
        if self.tool_calls and self.content and "".join(self.content):
            message["content"] = "".join(self.content)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i].out() for i in sorted(self.tool_calls)]
        message["annotations"] = []
        return {
            "index": index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


class ChatStream:
    """Joins ``chat.completion.chunk`` objects into one ``chat.completion``."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {}
        self.choices: dict[int, _Choice] = {}
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            raise StreamFailed(chunk)
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                self.head[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            held = self.choices.setdefault(int(choice.get("index", 0)), _Choice())
            held.add(choice.get("delta") or {})
            if isinstance(choice.get("logprobs"), dict):
                held.add_logprobs(choice["logprobs"])
            held.finish_reason = choice.get("finish_reason") or held.finish_reason

    def result(self) -> dict[str, Any]:
        if not self.choices or any(c.finish_reason is None for c in self.choices.values()):
            raise StreamIncomplete("the stream ended before every choice finished")
        body: dict[str, Any] = {"id": self.head.get("id"), "object": "chat.completion"}
        body.update({k: v for k, v in self.head.items() if k != "id"})
        body["choices"] = [self.choices[i].out(i) for i in sorted(self.choices)]
        if self.usage is not None:
            body["usage"] = self.usage
        return body


class ResponseStream:
    """Keeps the Response object of a Responses stream's final event."""

    def __init__(self) -> None:
        self.final: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "error":
            raise StreamFailed(
                {"error": {k: v for k, v in event.items() if k not in ("type", "sequence_number")}}
            )
        if kind in _RESPONSE_ENDS and isinstance(event.get("response"), dict):
            self.final = event["response"]

    def result(self) -> dict[str, Any]:
        if self.final is None:
            raise StreamIncomplete("the stream ended without its response.completed event")
        return self.final


def error_event(kind: str, message: str, code: str) -> tuple[str | None, str]:
    """A server error as the event that ends a stream of ``kind``, as OpenAI ends one: ``(event name,
    data)``, chat's ``{"error": {...}}`` data with no name, or Responses' ``error`` event."""
    detail = {"message": message, "type": "server_error", "param": None, "code": code}
    if kind == "response":
        return "error", json.dumps({"type": "error", **detail}, separators=(",", ":"))
    return None, json.dumps({"error": detail}, separators=(",", ":"))


def stream_aggregate(kind: str) -> ChatStream | ResponseStream:
    """The aggregate for a job kind's stream."""
    return ResponseStream() if kind == "response" else ChatStream()
