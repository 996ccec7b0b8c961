"""A provider batch's JSONL, both ways (pure): the input file built from jobs, and the output and
error files mapped back to them.

Each input line is ``{"custom_id": <job id>, "method": "POST", "url": <endpoint>, "body": <request>}``.
Each output line is ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``;
``custom_id`` maps it to its job. A line that is not JSON, names no job of the batch, or repeats one
already read, is skipped (and counted), never applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

RETRYABLE_LINE_STATUS = frozenset({408, 409, 429})
RETRYABLE_LINE_CODES = frozenset(
    {"batch_expired", "batch_failed", "batch_cancelled", "rate_limit_exceeded", "server_error", "timeout"}
)


def input_line(job_id: str, endpoint: str, request: Mapping[str, Any]) -> bytes:
    """One line of the input file, newline included."""
    line = {"custom_id": job_id, "method": "POST", "url": endpoint, "body": request}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class LineResult:
    """What the provider answered for one job: a body and its status code, or an error."""

    job_id: str
    status_code: int | None
    body: dict[str, Any] | None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and self.body is not None


@dataclass
class ReadLines:
    """The results read from the output and error files, by job id, and the lines skipped."""

    results: dict[str, LineResult] = field(default_factory=dict)
    skipped: int = 0


def read_lines(chunks: Iterable[bytes], expected: Iterable[str], into: ReadLines | None = None) -> ReadLines:
    """Map the lines of an output or error file to the ``expected`` job ids. A job's first line wins."""
    read = into if into is not None else ReadLines()
    wanted = set(expected)
    for raw in _split(chunks):
        result = _parse(raw)
        if result is None or result.job_id not in wanted or result.job_id in read.results:
            read.skipped += 1 if raw.strip() else 0
            continue
        read.results[result.job_id] = result
    return read


def _split(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        rest += chunk
        *lines, rest = rest.split(b"\n")
        yield from lines
    if rest:
        yield rest


def _parse(raw: bytes) -> LineResult | None:
    try:
        item = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
        return None
    job_id = item["custom_id"]
    response = item.get("response") if isinstance(item.get("response"), dict) else None
    error = item.get("error") if isinstance(item.get("error"), dict) else None
    status = response.get("status_code") if response else None
    body = response.get("body") if response else None
    status = status if isinstance(status, int) else None
    body = body if isinstance(body, dict) else None
    code, message = _error_of(error, body)
    return LineResult(job_id, status, body, code, message)


def _error_of(error: dict[str, Any] | None, body: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The error's code and message: the line's own ``error``, else the error body of a non-2xx answer."""
    detail = error
    if detail is None and body is not None and isinstance(body.get("error"), dict):
        detail = body["error"]
    if detail is None:
        return None, None
    code = detail.get("code") or detail.get("type")
    message = detail.get("message")
    return (str(code) if code else None), (str(message) if message else None)


class Verdict(StrEnum):
    """What becomes of a job after its provider batch ended."""

    complete = "complete"
    fail = "fail"
    live = "live"
    cancel = "cancel"


def verdict(
    result: LineResult | None,
    *,
    missing_code: str,
    cancel_requested: bool,
    deadline: datetime | None,
    now: datetime,
    live_margin_seconds: float,
) -> tuple[Verdict, LineResult]:
    """A job's fate from its line (``None``: the provider returned none for it, as for an expired or
    cancelled batch, whose ``missing_code`` names why). A success completes the job (a cancel asked for
    meanwhile still ends it cancelled, result kept, as a live run does). A retryable error (408, 409,
    429, 5xx, or the batch expired, failed or was cancelled under it) runs the job live if at least
    ``live_margin_seconds`` remain before its deadline; any other error fails it with the provider's."""
    if result is None:
        result = LineResult(
            "", None, None, missing_code, f"the provider batch ended ({missing_code}) without it"
        )
    if result.succeeded:
        return Verdict.complete, result
    if cancel_requested:
        return Verdict.cancel, result
    retryable = result.error_code in RETRYABLE_LINE_CODES or (
        result.status_code is not None
        and (result.status_code in RETRYABLE_LINE_STATUS or result.status_code >= 500)
    )
    time_left = deadline is None or deadline - now >= timedelta(seconds=live_margin_seconds)
    if retryable and time_left:
        return Verdict.live, result
    return Verdict.fail, result
