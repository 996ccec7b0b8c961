"""Configurable caps on what a caller may send, each refused with 422 and a code naming the limit.

``too_many_messages``  a chat or vision request with more than BATCHERY_MAX_MESSAGES messages
``metadata_too_large`` metadata whose JSON is over BATCHERY_MAX_METADATA_BYTES
``url_too_long``       a webhook or image URL over BATCHERY_MAX_URL_LENGTH characters
``line_too_large``     a batch input line over BATCHERY_MAX_JSONL_LINE_BYTES

The request body as a whole is capped by BATCHERY_MAX_BODY_BYTES (413 ``payload_too_large``, in
``api.body_limit``), and the request target by BATCHERY_MAX_URL_LENGTH (414, in ``api.request_limits``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from domain.errors import InvalidRequest, LimitExceeded
from domain.jobs.json_safety import text_problem


@dataclass(frozen=True, slots=True)
class InputLimits:
    max_messages: int = 2048
    max_metadata_bytes: int = 8192
    max_url_length: int = 2048
    max_jsonl_line_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> InputLimits:
        return cls(
            max_messages=settings.max_messages,
            max_metadata_bytes=settings.max_metadata_bytes,
            max_url_length=settings.max_url_length,
            max_jsonl_line_bytes=settings.max_jsonl_line_bytes,
        )


def check_job(
    limits: InputLimits,
    request: Mapping[str, Any],
    *,
    metadata: Mapping[str, str] | None = None,
    webhook_url: str | None = None,
    prefix: str = "",
) -> None:
    """Check one job's request body, metadata and webhook URL; ``prefix`` goes before each param name."""
    check_request(limits, request, param=f"{prefix}request")
    if metadata:
        size = len(json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False).encode())
        if size > limits.max_metadata_bytes:
            raise LimitExceeded(
                f"metadata is {size} bytes as JSON; the limit is {limits.max_metadata_bytes}",
                param=f"{prefix}metadata",
                code="metadata_too_large",
            )
    if webhook_url is not None:
        problem = text_problem(webhook_url)
        if problem is not None:
            raise InvalidRequest(f"{prefix}webhook_url: {problem}", param=f"{prefix}webhook_url")
        check_url_length(limits, webhook_url, param=f"{prefix}webhook_url")


def check_request(limits: InputLimits, request: Mapping[str, Any], *, param: str = "request") -> None:
    """Message count and image URL lengths of an OpenAI request body (chat ``messages``, or the
    Responses API's ``input`` items; an embedding's list of strings is not messages)."""
    for field in ("messages", "input"):
        messages = request.get(field)
        if not isinstance(messages, list) or not any(isinstance(item, dict) for item in messages):
            continue
        if len(messages) > limits.max_messages:
            raise LimitExceeded(
                f"{len(messages)} messages; the limit is {limits.max_messages}",
                param=f"{param}.{field}",
                code="too_many_messages",
            )
        for index, message in enumerate(messages):
            _check_image_urls(limits, message, f"{param}.{field}.{index}")


def _check_image_urls(limits: InputLimits, message: Any, param: str) -> None:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return
    for index, part in enumerate(content):
        image = part.get("image_url") if isinstance(part, dict) else None
        url = image.get("url") if isinstance(image, dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            check_url_length(limits, url, param=f"{param}.content.{index}.image_url.url")


def check_url_length(limits: InputLimits, url: str, *, param: str) -> None:
    if len(url) > limits.max_url_length:
        raise LimitExceeded(
            f"the URL is {len(url)} characters; the limit is {limits.max_url_length}",
            param=param,
            code="url_too_long",
        )


def check_jsonl_line(limits: InputLimits, line: bytes | str, *, line_number: int) -> None:
    """One line of a batch input file; ``param`` names the line (1-based)."""
    size = len(line.encode() if isinstance(line, str) else line)
    if size > limits.max_jsonl_line_bytes:
        raise LimitExceeded(
            f"line {line_number} is {size} bytes; the limit is {limits.max_jsonl_line_bytes}",
            param=f"line {line_number}",
            code="line_too_large",
        )
