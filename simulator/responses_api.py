"""``POST /v1/responses`` (the Responses API): validation, admission cost and the ``response`` object.

``input`` is a string or a list of items: messages (``role`` plus a string or parts ``input_text``,
``input_image``, ``input_file``, ``output_text``, ``refusal``), ``function_call`` and
``function_call_output`` items; other item types are accepted and not counted. ``instructions``
counts as prompt text. The answer follows the chat rules (see ``simulator.chat``): a function call when
function ``tools`` are given (under ``auto``, text again after a ``function_call_output``), JSON for
``text.format`` ``json_object``/``json_schema``, else filler text; reasoning models add a ``reasoning``
item. A completion cut by ``max_output_tokens`` is ``incomplete``. Directives can also be given in
``metadata.sim`` (see ``simulator.directives``). ``stream: true`` answers the same response as typed
events (see ``simulator.streaming``).
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
from simulator.prompt_tokens import MESSAGE_FRAMING, REPLY_PRIMING, PromptCounter
from simulator.ratelimit import Charge
from simulator.streaming import responses_stream_plan, stream_options
from simulator.tokens import (
    DEFAULT_IMAGE_SIZE,
    CompletionTokens,
    admission_tokens,
    cached_tokens,
    image_tokens,
    image_url_tokens,
    is_reasoning_model,
    plan_completion,
)

_TEXT_PARTS = frozenset({"input_text", "output_text"})
_DETAILS = ("auto", "low", "high")


def plan_response(body: Mapping[str, Any], ctx: CallContext) -> CallPlan:
    """Validate a Responses API request and plan its answer."""
    streaming = stream_options(body)
    raw_input = body.get("input")
    if raw_input is None:
        raise missing_parameter("input")
    items: list[Any] = [{"role": "user", "content": raw_input}] if isinstance(raw_input, str) else raw_input
    if not isinstance(items, list):
        raise invalid_type("input", "a string or an array", raw_input)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_type("instructions", "a string", instructions)
    scan = PromptScan()
    for index, item in enumerate(items):
        _scan_item(item, f"input[{index}]", ctx.model, scan)
    tools = params.optional_list(body, "tools") or []
    output = _choose_output(body, tools, items)
    cap = params.completion_cap(body, ("max_output_tokens",), ctx.default_max_tokens)
    prompt_tokens = response_prompt_tokens(body, items, ctx.model) + scan.image_tokens
    reasoning = is_reasoning_model(ctx.model)
    completion = plan_completion(prompt_tokens, cap, reasoning)

    def render() -> tuple[dict[str, Any], Usage]:
        seen = prompt_tokens >= 1024 and ctx.prompt_cache.seen_before(
            compact_json([ctx.model, instructions, items, tools]).encode()
        )
        cached = cached_tokens(prompt_tokens, seen)
        answer = response_body(body, ctx.model, prompt_tokens, cached, completion, output, reasoning)
        return answer, Usage(prompt_tokens, completion.total)

    stream = responses_stream_plan(streaming) if streaming is not None else None
    return CallPlan(Charge(tokens=admission_tokens(prompt_tokens, cap)), render, stream)


def response_prompt_tokens(body: Mapping[str, Any], items: list[Any], model: str) -> int:
    """Prompt tokens of a validated Responses request, its images aside."""
    counter = PromptCounter(model)
    instructions = body.get("instructions")
    total = REPLY_PRIMING + (MESSAGE_FRAMING + counter.text(instructions) if instructions else 0)
    for item in items:
        total += counter.message(item) if "content" in item else counter.json(item)
    total += counter.functions(body.get("tools"), nested=False)
    return total + counter.json(body.get("text"))


def _scan_item(item: object, where: str, model: str, scan: PromptScan) -> None:
    if not isinstance(item, Mapping):
        raise invalid_type(where, "an object", item)
    kind = item.get("type", "message")
    if kind == "message":
        if item.get("role") not in ("user", "assistant", "system", "developer"):
            raise invalid_value(f"{where}.role", f"Invalid value for '{where}.role': {item.get('role')!r}.")
        _scan_content(item.get("content"), f"{where}.content", model, scan)


def _scan_content(content: object, where: str, model: str, scan: PromptScan) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid_type(where, "a string or an array", content)
    for index, part in enumerate(content):
        here = f"{where}[{index}]"
        if not isinstance(part, Mapping):
            raise invalid_type(here, "an object", part)
        kind = part.get("type")
        if kind in _TEXT_PARTS or kind == "refusal":
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise invalid_type(f"{here}.text", "a string", text)
        elif kind == "input_image":
            scan.image_tokens += _image_tokens(part, here, model)
        elif kind != "input_file":
            raise invalid_value(
                f"{here}.type",
                f"Invalid value: {kind!r}. Supported values are: 'input_text', "
                "'input_image', 'input_file', 'output_text' and 'refusal'.",
            )


def _image_tokens(part: Mapping[str, Any], where: str, model: str) -> int:
    detail = part.get("detail") or "auto"
    if detail not in _DETAILS:
        raise invalid_value(
            f"{where}.detail", f"Invalid value: {detail!r}. Supported values are: 'auto', 'low', 'high'."
        )
    url = part.get("image_url")
    if url is None:
        return image_tokens(model, DEFAULT_IMAGE_SIZE, detail)
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:image/")):
        raise invalid_request("Invalid image URL.", f"{where}.image_url", "invalid_image_url")
    try:
        return image_url_tokens(model, url, detail)
    except BadImageDataError as exc:
        raise invalid_request(str(exc), f"{where}.image_url", "invalid_base64_image") from None


def _choose_output(body: Mapping[str, Any], tools: list[Any], items: list[Any]) -> Output:
    functions = {
        tool["name"]: tool.get("parameters")
        for tool in tools
        if isinstance(tool, Mapping) and tool.get("type") == "function" and isinstance(tool.get("name"), str)
    }
    choice = body.get("tool_choice")
    if functions and choice != "none":
        if isinstance(choice, Mapping):
            name = choice.get("name")
            if name not in functions:
                raise invalid_value(
                    "tool_choice", f"Invalid 'tool_choice': no function named {name!r} in 'tools'."
                )
            return Output("tool", function=name, parameters=functions[name])
        last = items[-1] if items else {}
        answered = isinstance(last, Mapping) and last.get("type") == "function_call_output"
        if choice == "required" or not answered:
            first = next(iter(functions))
            return Output("tool", function=first, parameters=functions[first])
    text = params.optional_object(body, "text") or {}
    requested = text.get("format")
    fmt: Mapping[str, Any] = requested if isinstance(requested, Mapping) else {"type": "text"}
    kind = fmt.get("type")
    if kind == "json_object":
        return Output("json")
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str):
            raise missing_parameter("text.format.name")
        return Output("json", schema=fmt.get("schema") or {"type": "object"})
    if kind != "text":
        raise invalid_value(
            "text.format.type",
            f"Invalid value: {kind!r}. Supported values are: 'text', 'json_object' and 'json_schema'.",
        )
    return Output("text")


def response_body(
    body: Mapping[str, Any],
    model: str,
    prompt_tokens: int,
    cached: int,
    completion: CompletionTokens,
    output: Output,
    reasoning: bool,
) -> dict[str, Any]:
    """The ``response`` object."""
    now = int(time.time())
    status = "incomplete" if completion.truncated else "completed"
    items: list[dict[str, Any]] = []
    if reasoning:
        items.append({"id": new_id("rs_"), "type": "reasoning", "summary": []})
    if output.kind == "tool" and output.function is not None:
        items.append(
            {
                "id": new_id("fc_"),
                "type": "function_call",
                "call_id": new_id("call_"),
                "name": output.function,
                "arguments": tool_arguments(output.parameters),
                "status": "completed",
            }
        )
    else:
        text = (
            json_reply(output.schema, completion.visible)
            if output.kind == "json"
            else reply_text(completion.visible)
        )
        content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        items.append(
            {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": content,
            }
        )
    text_param = body.get("text")
    text_format = text_param.get("format") if isinstance(text_param, Mapping) else None
    answer: dict[str, Any] = {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now,
        "status": status,
        "completed_at": None if completion.truncated else now,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if completion.truncated else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": items,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": _effort(body), "summary": None} if reasoning else None,
        "service_tier": "default",
        "store": body.get("store", True) is not False,
        "temperature": _number_or(body.get("temperature"), 1.0),
        "text": {"format": text_format or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [_echo_tool(tool) for tool in params.optional_list(body, "tools") or []],
        "top_p": _number_or(body.get("top_p"), 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": completion.total,
            "output_tokens_details": {"reasoning_tokens": completion.reasoning},
            "total_tokens": prompt_tokens + completion.total,
        },
        "metadata": body.get("metadata") or {},
    }
    if isinstance(body.get("user"), str):
        answer["user"] = body["user"]
    return answer


def _effort(body: Mapping[str, Any]) -> str:
    requested = body.get("reasoning")
    effort = requested.get("effort") if isinstance(requested, Mapping) else None
    return effort if isinstance(effort, str) else "medium"


def _number_or(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _echo_tool(tool: object) -> object:
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        return tool
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict", True),
    }
