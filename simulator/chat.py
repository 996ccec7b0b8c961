"""``POST /v1/chat/completions``: validation, admission cost and the ``chat.completion`` body.

What the simulated model answers:

- with ``tools`` (and ``tool_choice`` not ``none``) it calls a function: the one ``tool_choice`` names,
  else the first one; under ``auto`` it answers in text instead when the last message is a tool result.
  The arguments are the minimal JSON object satisfying the function's ``parameters`` schema;
- with ``response_format`` ``json_schema`` the content is the minimal instance of the schema, with
  ``json_object`` an object ``{"reply": ...}`` (the messages must mention JSON, as hosted APIs require);
- otherwise filler text of the planned number of tokens (see ``simulator.tokens``).

``n`` choices are identical; ``usage.completion_tokens`` sums them. Reasoning models refuse
``max_tokens`` (use ``max_completion_tokens``), as hosted APIs do. ``stream: true`` answers the same
completion as ``chat.completion.chunk`` events (see ``simulator.streaming``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from simulator import params
from simulator.calls import (
    CallContext,
    CallPlan,
    Output,
    PromptScan,
    Usage,
    compact_json,
    json_reply,
    new_id,
    reply_text,
    tool_arguments,
)
from simulator.errors import invalid_request, invalid_type, invalid_value, missing_parameter
from simulator.image_size import BadImageDataError
from simulator.prompt_tokens import REPLY_PRIMING, PromptCounter
from simulator.ratelimit import Charge
from simulator.streaming import chat_stream_plan, stream_options
from simulator.tokens import (
    CompletionTokens,
    admission_tokens,
    cached_tokens,
    image_url_tokens,
    is_reasoning_model,
    plan_completion,
)

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_DETAILS = ("auto", "low", "high")


def plan_chat(body: Mapping[str, Any], ctx: CallContext) -> CallPlan:
    """Validate a chat completion request and plan its answer."""
    messages = body.get("messages")
    if messages is None:
        raise missing_parameter("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise invalid_value(
            "messages", "Invalid 'messages': empty array. Expected an array with minimum length 1."
        )
    streaming = stream_options(body)
    reasoning = is_reasoning_model(ctx.model)
    if reasoning and body.get("max_tokens") is not None:
        raise invalid_request(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    choices = params.optional_int(body, "n", 1, 128) or 1
    cap = params.completion_cap(body, ("max_completion_tokens", "max_tokens"), ctx.default_max_tokens)
    scan = scan_messages(messages, ctx.model)
    tools = params.optional_list(body, "tools")
    output = choose_output(body, tools, messages)
    if output.kind == "json" and output.schema is None and not scan.mentions_json:
        raise invalid_request(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
            "'json_object'.",
            "messages",
        )
    prompt_tokens = chat_prompt_tokens(body, ctx.model) + scan.image_tokens
    completion = plan_completion(prompt_tokens, cap, reasoning)

    def render() -> tuple[dict[str, Any], Usage]:
        seen = prompt_tokens >= 1024 and ctx.prompt_cache.seen_before(
            compact_json([ctx.model, messages, tools]).encode()
        )
        return completion_body(
            ctx.model, prompt_tokens, cached_tokens(prompt_tokens, seen), completion, output, choices
        )

    stream = chat_stream_plan(streaming) if streaming is not None else None
    return CallPlan(Charge(tokens=admission_tokens(prompt_tokens, cap, choices)), render, stream)


def chat_prompt_tokens(body: Mapping[str, Any], model: str) -> int:
    """Prompt tokens of a validated chat request, its images aside."""
    counter = PromptCounter(model)
    total = REPLY_PRIMING + sum(counter.message(message) for message in body["messages"])
    total += counter.functions(body.get("tools"), nested=True)
    total += counter.functions(body.get("functions"), nested=False)
    return total + counter.json(body.get("response_format"))


def scan_messages(messages: list[Any], model: str) -> PromptScan:
    """Count the image tokens of the messages, checking their shape."""
    scan = PromptScan()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise invalid_type(where, "an object", message)
        role = message.get("role")
        if role not in _ROLES:
            raise invalid_value(f"{where}.role", f"Invalid value for '{where}.role': {role!r}.")
        _scan_content(message.get("content"), f"{where}.content", model, scan)
    return scan


def _scan_content(content: object, where: str, model: str, scan: PromptScan) -> None:
    if content is None:
        return
    if isinstance(content, str):
        _add_text(content, scan)
        return
    if not isinstance(content, list):
        raise invalid_type(where, "a string or an array", content)
    for index, part in enumerate(content):
        here = f"{where}[{index}]"
        if not isinstance(part, Mapping):
            raise invalid_type(here, "an object", part)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid_type(f"{here}.{kind}", "a string", text)
            _add_text(text, scan)
        elif kind == "image_url":
            scan.image_tokens += _image_part_tokens(part.get("image_url"), f"{here}.image_url", model)
        elif kind not in ("input_audio", "file"):
            raise invalid_value(
                f"{here}.type",
                f"Invalid value: {kind!r}. Supported values are: 'text', "
                "'image_url', 'input_audio', 'refusal' and 'file'.",
            )


def _add_text(text: str, scan: PromptScan) -> None:
    if not scan.mentions_json and "json" in text.lower():
        scan.mentions_json = True


def _image_part_tokens(image: object, where: str, model: str) -> int:
    if not isinstance(image, Mapping):
        raise invalid_type(where, "an object", image)
    url = image.get("url")
    if not isinstance(url, str):
        raise (
            missing_parameter(f"{where}.url")
            if url is None
            else invalid_type(f"{where}.url", "a string", url)
        )
    detail = image.get("detail") or "auto"
    if detail not in _DETAILS:
        raise invalid_value(
            f"{where}.detail", f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', 'high'."
        )
    if not url.startswith(("http://", "https://", "data:image/")):
        raise invalid_request(
            "Invalid image URL: expected an http(s) URL or a data:image/...;base64 URL.",
            f"{where}.url",
            "invalid_image_url",
        )
    try:
        return image_url_tokens(model, url, detail)
    except BadImageDataError as exc:
        raise invalid_request(str(exc), f"{where}.url", "invalid_base64_image") from None


def choose_output(body: Mapping[str, Any], tools: list[Any] | None, messages: list[Any]) -> Output:
    """What the simulated model answers with, from tools, tool_choice and response_format."""
    functions = _functions(tools or [])
    choice = body.get("tool_choice")
    if functions and choice != "none":
        if isinstance(choice, Mapping):
            named = choice.get("function")
            name = named.get("name") if isinstance(named, Mapping) else None
            if name not in functions:
                raise invalid_value(
                    "tool_choice", f"Invalid 'tool_choice': no function named {name!r} in 'tools'."
                )
            return Output("tool", function=name, parameters=functions[name])
        if choice not in (None, "auto", "required"):
            raise invalid_value(
                "tool_choice",
                f"Invalid value: {choice!r}. Supported values are: 'none', 'auto', "
                "'required' or a named function.",
            )
        last = messages[-1]
        if choice == "required" or not (isinstance(last, Mapping) and last.get("role") == "tool"):
            first = next(iter(functions))
            return Output("tool", function=first, parameters=functions[first])
    response_format = params.optional_object(body, "response_format")
    kind = response_format.get("type") if response_format is not None else "text"
    if kind == "json_object":
        return Output("json")
    if kind == "json_schema":
        spec = response_format.get("json_schema") if response_format is not None else None
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise missing_parameter("response_format.json_schema.name")
        return Output("json", schema=spec.get("schema") or {"type": "object"})
    if kind != "text":
        raise invalid_value(
            "response_format.type",
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object' and 'json_schema'.",
        )
    return Output("text")


def _functions(tools: list[Any]) -> dict[str, object]:
    """Function tools by name, with their parameters schema."""
    functions: dict[str, object] = {}
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise invalid_type(f"tools[{index}]", "an object", tool)
        if tool.get("type") != "function":
            continue
        function = tool.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise missing_parameter(f"tools[{index}].function.name")
        functions[name] = function.get("parameters") if isinstance(function, Mapping) else None
    return functions


def completion_body(
    model: str, prompt_tokens: int, cached: int, completion: CompletionTokens, output: Output, choices: int
) -> tuple[dict[str, Any], Usage]:
    """The ``chat.completion`` object and the usage it reports."""
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    finish = "length" if completion.truncated else "stop"
    if output.kind == "tool" and output.function is not None:
        arguments = tool_arguments(output.parameters)
        message["tool_calls"] = [
            {
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": output.function, "arguments": arguments},
            }
        ]
        finish = "length" if completion.truncated else "tool_calls"
    elif output.kind == "json":
        message["content"] = json_reply(output.schema, completion.visible)
    else:
        message["content"] = reply_text(completion.visible)
    completion_tokens = completion.total * choices
    body = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
            for index in range(choices)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": completion.reasoning * choices,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_simulator",
    }
    return body, Usage(prompt_tokens, completion_tokens)
