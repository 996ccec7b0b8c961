"""Server-Sent Events of streamed calls, built from the success body they stand for.

A streamed call is planned and rendered like any other; its events are then cut from the finished body,
so that what a client aggregates from the stream is exactly the body a non-streamed call gets.

Chat completions (``stream: true``): ``data: {chat.completion.chunk}`` lines, one choice per chunk, the
choices interleaved. A choice opens with delta ``{"role": "assistant", "content": "", "refusal": null}``
(a function call opens with ``{"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id",
"type": "function", "function": {"name", "arguments": ""}}], "refusal": null}``), goes on with content
deltas ``{"content": ...}`` (or ``{"tool_calls": [{"index": 0, "function": {"arguments": ...}}]}``) of a
few tokens each, and ends with an empty delta carrying ``finish_reason``. With
``stream_options.include_usage`` every chunk has ``"usage": null`` and a last chunk ``"choices": []``
has the usage. Unless ``stream_options.include_obfuscation`` is false, each chunk carries a random
``obfuscation`` string, as hosted APIs send. The stream ends with ``data: [DONE]``.

Responses (``stream: true``): ``event: TYPE`` / ``data: {"type": TYPE, "sequence_number": N, ...}``
events: ``response.created``, ``response.in_progress``, per output item ``response.output_item.added``,
for a message ``response.content_part.added``, ``response.output_text.delta`` ...,
``response.output_text.done``, ``response.content_part.done``, for a function call
``response.function_call_arguments.delta`` ... and ``.done``, then ``response.output_item.done``; last
``response.completed`` (``response.incomplete`` when cut by ``max_output_tokens``) with the whole
response. No ``[DONE]``.

A failure mid-stream (directive ``stream_error_after=N``) sends, after N deltas, the chat frame
``data: {"error": {"message", "type": "server_error", "param": null, "code": null}}`` or the Responses
event ``error`` ``{"type": "error", "code": "server_error", "message", "param": null, "sequence_number"}``,
and closes the stream without ``[DONE]``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from simulator import params
from simulator.calls import StreamFrame, StreamPlan
from simulator.errors import error_for_status, invalid_value

TOKENS_PER_DELTA = 3
DONE_FRAME = b"data: [DONE]\n\n"
_TOKEN = re.compile(r"\s*\S{1,4}|\s+")


def stream_options(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The stream options of a streamed request (``{}`` when none are given), None when it does not stream."""
    streamed = params.optional_bool(body, "stream") or False
    options = params.optional_object(body, "stream_options")
    if options is not None and not streamed:
        raise invalid_value(
            "stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        )
    if not streamed:
        return None
    return options or {}


def split_reply(text: str, tokens_per_piece: int = TOKENS_PER_DELTA) -> list[str]:
    """``text`` in pieces of a few tokens each (about four characters a token); they join back to it."""
    tokens = _TOKEN.findall(text)
    return [
        "".join(tokens[start : start + tokens_per_piece]) for start in range(0, len(tokens), tokens_per_piece)
    ]


def chat_stream_plan(options: Mapping[str, Any]) -> StreamPlan:
    """How a streamed chat completion goes on the wire."""
    include_usage = options.get("include_usage") is True
    obfuscate = options.get("include_obfuscation") is not False
    return StreamPlan(
        lambda answer: chat_frames(answer, include_usage, obfuscate), lambda _sent: chat_error_frame()
    )


def responses_stream_plan(options: Mapping[str, Any]) -> StreamPlan:
    """How a streamed Responses call goes on the wire."""
    obfuscate = options.get("include_obfuscation") is not False
    return StreamPlan(lambda answer: response_events(answer, obfuscate), response_error_frame)


def chat_frames(answer: Mapping[str, Any], include_usage: bool, obfuscate: bool) -> list[StreamFrame]:
    """The ``chat.completion.chunk`` frames of a ``chat.completion`` body, ``[DONE]`` last."""
    head = {key: answer[key] for key in ("id", "created", "model", "service_tier", "system_fingerprint")}

    def chunk(choices: list[dict[str, Any]], usage: object = None) -> bytes:
        value: dict[str, Any] = {
            "id": head["id"],
            "object": "chat.completion.chunk",
            "created": head["created"],
            "model": head["model"],
            "service_tier": head["service_tier"],
            "system_fingerprint": head["system_fingerprint"],
            "choices": choices,
        }
        if include_usage:
            value["usage"] = usage
        if obfuscate:
            value["obfuscation"] = _obfuscation()
        return _data(value)

    scripts = [_choice_deltas(choice) for choice in answer["choices"]]
    frames: list[StreamFrame] = []
    for step in range(max((len(script) for script in scripts), default=0)):
        for index, script in enumerate(scripts):
            if step < len(script):
                delta, finish, is_delta = script[step]
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                frames.append(StreamFrame(chunk([choice]), is_delta))
    if include_usage:
        frames.append(StreamFrame(chunk([], answer["usage"])))
    frames.append(StreamFrame(DONE_FRAME))
    return frames


def _choice_deltas(choice: Mapping[str, Any]) -> list[tuple[dict[str, Any], str | None, bool]]:
    """``(delta, finish_reason, is_delta)`` of one choice, in order."""
    message = choice["message"]
    steps: list[tuple[dict[str, Any], str | None, bool]] = []
    calls = message.get("tool_calls")
    if calls:
        opening: list[dict[str, Any]] = []
        for index, call in enumerate(calls):
            function = {"name": call["function"]["name"], "arguments": ""}
            opening.append({"index": index, "id": call["id"], "type": call["type"], "function": function})
        first = {"role": "assistant", "content": None, "tool_calls": opening[:1], "refusal": None}
        steps.append((first, None, False))
        for index, call in enumerate(calls):
            if index:
                steps.append(({"tool_calls": [opening[index]]}, None, False))
            for piece in split_reply(call["function"]["arguments"]):
                fragment = {"index": index, "function": {"arguments": piece}}
                steps.append(({"tool_calls": [fragment]}, None, True))
    else:
        steps.append(({"role": "assistant", "content": "", "refusal": None}, None, False))
        steps.extend(({"content": piece}, None, True) for piece in split_reply(message.get("content") or ""))
    steps.append(({}, choice["finish_reason"], False))
    return steps


def chat_error_frame() -> bytes:
    """The frame a hosted API sends when a chat stream fails midway."""
    return _data(error_for_status(500).body())


def response_events(answer: Mapping[str, Any], obfuscate: bool) -> list[StreamFrame]:
    """The typed events of a ``response`` object, ``response.completed`` (or ``.incomplete``) last."""
    events: list[StreamFrame] = []

    def emit(kind: str, fields: dict[str, Any], is_delta: bool = False) -> None:
        value = {"type": kind, "sequence_number": len(events), **fields}
        if is_delta and obfuscate:
            value["obfuscation"] = _obfuscation()
        events.append(StreamFrame(b"event: " + kind.encode() + b"\n" + _data(value), is_delta))

    opening = _in_progress(answer)
    emit("response.created", {"response": opening})
    emit("response.in_progress", {"response": opening})
    for output_index, item in enumerate(answer["output"]):
        where = {"output_index": output_index}
        emit("response.output_item.added", {**where, "item": _item_opening(item)})
        at = {"item_id": item["id"], **where}
        if item["type"] == "function_call":
            for piece in split_reply(item["arguments"]):
                emit("response.function_call_arguments.delta", {**at, "delta": piece}, is_delta=True)
            emit("response.function_call_arguments.done", {**at, "arguments": item["arguments"]})
        elif item["type"] == "message":
            for content_index, part in enumerate(item["content"]):
                spot = {**at, "content_index": content_index}
                emit("response.content_part.added", {**spot, "part": {**part, "text": ""}})
                for piece in split_reply(part["text"]):
                    emit(
                        "response.output_text.delta", {**spot, "delta": piece, "logprobs": []}, is_delta=True
                    )
                emit("response.output_text.done", {**spot, "text": part["text"], "logprobs": []})
                emit("response.content_part.done", {**spot, "part": part})
        emit("response.output_item.done", {**where, "item": item})
    final = "response.incomplete" if answer["status"] == "incomplete" else "response.completed"
    emit(final, {"response": answer})
    return events


def _in_progress(answer: Mapping[str, Any]) -> dict[str, Any]:
    opening = copy.deepcopy(dict(answer))
    opening.update(status="in_progress", completed_at=None, incomplete_details=None, output=[], usage=None)
    return opening


def _item_opening(item: Mapping[str, Any]) -> dict[str, Any]:
    if item["type"] == "message":
        return {**item, "status": "in_progress", "content": []}
    if item["type"] == "function_call":
        return {**item, "status": "in_progress", "arguments": ""}
    return dict(item)


def response_error_frame(sequence_number: int) -> bytes:
    """The ``error`` event a hosted API sends when a Responses stream fails midway."""
    error = error_for_status(500)
    value = {
        "type": "error",
        "code": "server_error",
        "message": error.message,
        "param": None,
        "sequence_number": sequence_number,
    }
    return b"event: error\n" + _data(value)


def stream_script(
    frames: list[StreamFrame], plan: StreamPlan, error_after: int | None, malformed: bool
) -> tuple[list[bytes], bool]:
    """The bytes to send, frame by frame, and whether the stream completes.

    ``error_after``: fail after that many deltas (after the last one when there are fewer; after the
    opening frame when there are none). ``malformed``: send half of the first frame, then close.
    """
    if malformed:
        first = frames[0].data
        return [first[: max(1, len(first) // 2)]], False
    if error_after is None:
        return [frame.data for frame in frames], True
    deltas = [position for position, frame in enumerate(frames) if frame.is_delta]
    if not deltas:
        cut = 1
    elif error_after == 0:
        cut = deltas[0]
    else:
        cut = deltas[min(error_after, len(deltas)) - 1] + 1
    return [frame.data for frame in frames[:cut]] + [plan.error_frame(cut)], False


def _data(value: object) -> bytes:
    return b"data: " + json.dumps(value, separators=(",", ":")).encode() + b"\n\n"


def _obfuscation() -> str:
    return os.urandom(8).hex()[: 2 + os.urandom(1)[0] % 14]
