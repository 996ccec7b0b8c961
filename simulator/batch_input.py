"""A batch input file checked as OpenAI checks it while a batch is ``validating``.

Each non-blank line of the JSONL file must be an object
``{"custom_id": "r1", "method": "POST", "url": "<the batch's endpoint>", "body": {"model": ..., ...}}``.
``custom_id`` is unique within the file, every line names the same model, and a file holds 1 to 50,000
requests. What breaks a rule becomes one entry of the batch's ``errors.data``:
``{"code", "message", "param", "line"}`` with the 1-based line number (``line`` is null for file-wide
errors). The codes: ``empty_file``, ``too_many_tasks``, ``invalid_json_line``,
``missing_required_parameter``, ``invalid_type``, ``invalid_method``, ``invalid_url``,
``duplicate_custom_id``, ``mismatched_model``. Whether a body is a valid request is not checked here:
an invalid body fails only its own line (a 400 in the error file), as with OpenAI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH_LINES = 50_000
MAX_REPORTED_ERRORS = 1000


@dataclass(frozen=True, slots=True)
class InputLine:
    """One request of a batch input file."""

    number: int
    custom_id: str
    body: dict[str, Any]


@dataclass(slots=True)
class CheckedInput:
    """The requests of a file, the one model they name, and the validation errors (empty when valid)."""

    lines: list[InputLine] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def batch_error(code: str, message: str, param: str | None = None, line: int | None = None) -> dict[str, Any]:
    """One entry of a batch's ``errors.data`` (the spec's ``BatchError``)."""
    return {"code": code, "message": message, "param": param, "line": line}


def check_batch_input(content: bytes, endpoint: str) -> CheckedInput:
    """Parse and check ``content`` for a batch on ``endpoint``."""
    checked = CheckedInput()
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        checked.errors.append(batch_error("invalid_json_line", "The file is not UTF-8 encoded text."))
        return checked
    numbered = [(number, raw) for number, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if not numbered:
        checked.errors.append(batch_error("empty_file", "The batch input file is empty."))
        return checked
    if len(numbered) > MAX_BATCH_LINES:
        message = f"The batch input file has {len(numbered)} requests; at most {MAX_BATCH_LINES} are allowed."
        checked.errors.append(batch_error("too_many_tasks", message))
        return checked
    seen: set[str] = set()
    for number, raw in numbered:
        line = _check_line(number, raw, endpoint, seen, checked)
        if line is not None:
            checked.lines.append(line)
        if len(checked.errors) >= MAX_REPORTED_ERRORS:
            break
    return checked


def _check_line(
    number: int, raw: str, endpoint: str, seen: set[str], checked: CheckedInput
) -> InputLine | None:
    errors = checked.errors
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        message = "This line is not parseable as valid JSON."
        errors.append(batch_error("invalid_json_line", message, None, number))
        return None
    problem = _field_problem(value, endpoint)
    if problem is not None:
        errors.append(batch_error(*problem, number))
        return None
    custom_id: str = value["custom_id"]
    body: dict[str, Any] = value["body"]
    if custom_id in seen:
        message = (
            "The custom_id for this request is a duplicate of another request. The custom_id parameter "
            "must be unique for each request in a batch."
        )
        errors.append(batch_error("duplicate_custom_id", message, "custom_id", number))
        return None
    seen.add(custom_id)
    model = body["model"]
    if checked.model is None:
        checked.model = model
    elif model != checked.model:
        message = (
            f"The provided model '{model}' does not match the model of the other requests in this batch "
            f"('{checked.model}'). Every request in a batch must use the same model."
        )
        errors.append(batch_error("mismatched_model", message, "body.model", number))
        return None
    return InputLine(number, custom_id, body)


def _field_problem(value: dict[str, Any], endpoint: str) -> tuple[str, str, str] | None:
    """``(code, message, param)`` of the first broken field of a line, or None."""
    for name, kind, type_name in (("custom_id", str, "a string"), ("method", str, "a string")):
        if name not in value:
            return "missing_required_parameter", f"Missing required parameter: '{name}'.", name
        if not isinstance(value[name], kind) or not value[name]:
            return "invalid_type", f"Invalid '{name}': expected {type_name}.", name
    if value["method"] != "POST":
        message = "The method provided for this request is not supported. Only POST is supported."
        return "invalid_method", message, "method"
    if "url" not in value:
        return "missing_required_parameter", "Missing required parameter: 'url'.", "url"
    if value["url"] != endpoint:
        message = f"The URL provided for this request does not match the batch endpoint ({endpoint})."
        return "invalid_url", message, "url"
    body = value.get("body")
    if body is None:
        return "missing_required_parameter", "Missing required parameter: 'body'.", "body"
    if not isinstance(body, dict):
        return "invalid_type", "Invalid 'body': expected an object.", "body"
    model = body.get("model")
    if model is None:
        return "missing_required_parameter", "Missing required parameter: 'body.model'.", "body.model"
    if not isinstance(model, str) or not model:
        return "invalid_type", "Invalid 'body.model': expected a non-empty string.", "body.model"
    return None
