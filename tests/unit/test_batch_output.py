"""Output and error lines in OpenAI's exact format, chosen from a job's final state, and the Batch
object checked against OpenAI's own schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.batches.output import JobResult, encode_line, line_id, request_id, result_line
from domain.batches.repository import Tally
from domain.batches.schemas import BatchStatus
from domain.batches.views import batch_out
from domain.storage.models import Batch
from tests.support.openai_schema import assert_conforms, assert_output_line, without_nulls

pytestmark = pytest.mark.unit

CHAT_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
ERROR_BODY = {
    "error": {"message": "Invalid model", "type": "invalid_request_error", "param": "model", "code": None}
}


def _job(status: str, **values: Any) -> JobResult:
    base: dict[str, Any] = {
        "id": "job_01abc",
        "custom_id": "r1",
        "status": status,
        "result": None,
        "error_type": None,
        "error_message": None,
        "error_status": None,
    }
    base.update(values)
    return JobResult(**base)


def test_a_success_goes_to_the_output_file_with_the_upstreams_body() -> None:
    target, line = result_line(_job("succeeded", result=CHAT_BODY), BatchStatus.completed)
    assert target == "output"
    assert line == {
        "id": "batch_req_01abc",
        "custom_id": "r1",
        "response": {"status_code": 200, "request_id": "req_01abc", "body": CHAT_BODY},
        "error": None,
    }
    assert_output_line(line)
    assert_conforms("CreateChatCompletionResponse", line["response"]["body"])


def test_an_upstream_http_error_keeps_its_status_code_and_body() -> None:
    job = _job("failed", result=ERROR_BODY, error_type="invalid_request_error", error_status=400)
    target, line = result_line(job, BatchStatus.completed)
    assert target == "error"
    assert line["response"] == {"status_code": 400, "request_id": "req_01abc", "body": ERROR_BODY}
    assert line["error"] is None
    assert_output_line(line)


def test_an_http_error_without_a_json_body_gets_an_openai_shaped_one() -> None:
    job = _job("failed", error_type="http_502", error_message="bad gateway", error_status=502)
    _, line = result_line(job, BatchStatus.completed)
    assert line["response"]["body"]["error"]["message"] == "bad gateway"
    assert_output_line(line)


def test_a_failure_that_was_not_an_http_answer_has_an_error_object() -> None:
    job = _job("failed", error_type="timeout", error_message="no answer within 60s")
    target, line = result_line(job, BatchStatus.completed)
    assert target == "error"
    assert line["response"] is None
    assert line["error"] == {"code": "timeout", "message": "no answer within 60s"}
    assert_output_line(line)


@pytest.mark.parametrize(
    ("end", "code"),
    [(BatchStatus.expired, "batch_expired"), (BatchStatus.cancelled, "batch_cancelled")],
)
def test_requests_that_never_ran_say_why(end: BatchStatus, code: str) -> None:
    target, line = result_line(_job("cancelled"), end)
    assert target == "error"
    assert line["response"] is None and line["error"]["code"] == code
    assert_output_line(line)


def test_a_request_answered_while_its_cancel_was_pending_is_still_an_output() -> None:
    target, line = result_line(_job("cancelled", result=CHAT_BODY), BatchStatus.cancelled)
    assert target == "output" and line["response"]["body"] == CHAT_BODY


def test_lines_are_one_compact_json_object_each() -> None:
    encoded = encode_line({"custom_id": "é\nx", "n": 1})
    assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
    assert json.loads(encoded) == {"custom_id": "é\nx", "n": 1}
    assert line_id("job_01xyz") == "batch_req_01xyz" and request_id("job_01xyz") == "req_01xyz"


def _batch(**values: Any) -> Batch:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    base: dict[str, Any] = {
        "id": "batch_01abc",
        "tenant_id": "default",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-01abc",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": now,
        "in_progress_at": now,
        "expires_at": now,
        "request_total": 10,
        "request_completed": 0,
        "request_failed": 0,
        "meta": {"team": "search"},
    }
    base.update(values)
    return Batch(**base)


def test_a_running_batch_shows_live_counts_and_usage_and_every_field() -> None:
    live = Tally(
        queued=5, running=1, succeeded=3, failed=1, input_tokens=30, output_tokens=9, total_tokens=39
    )
    shown = batch_out(_batch(), live).model_dump(mode="json")
    assert shown["request_counts"] == {"total": 10, "completed": 3, "failed": 1}
    assert shown["usage"]["input_tokens"] == 30 and shown["usage"]["total_tokens"] == 39
    assert shown["created_at"] == 1735787045 and shown["completed_at"] is None
    fields = {
        "id", "object", "endpoint", "input_file_id", "completion_window", "status", "created_at",
        "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
        "cancelling_at", "cancelled_at", "output_file_id", "error_file_id", "errors", "request_counts",
        "metadata", "usage", "model",
    }  # fmt: skip
    assert fields <= set(shown)
    assert_conforms("Batch", without_nulls(shown))


def test_a_failed_batch_lists_its_errors() -> None:
    errors = [{"code": "invalid_json_line", "message": "m", "param": None, "line": 2}]
    shown = batch_out(_batch(status="failed", errors=errors)).model_dump(mode="json")
    assert shown["errors"] == {"object": "list", "data": errors}
    assert_conforms("Batch", without_nulls(shown))
