"""The simulator's batch input checks, output line records and multipart parsing (pure functions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from simulator.batch_input import check_batch_input
from simulator.batch_lines import not_run_record, response_record
from simulator.multipart import MultipartError, boundary_of, parse_form

pytestmark = pytest.mark.unit

CHAT = "/v1/chat/completions"


def line(custom_id: object = "r1", model: object = "gpt-4o-mini", **overrides: Any) -> str:
    value: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]},
    }
    value.update(overrides)
    return json.dumps(value)


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_a_valid_file_gives_its_lines_and_model() -> None:
    checked = check_batch_input(jsonl(line("a"), "", line("b")), CHAT)
    assert checked.valid
    assert [(item.number, item.custom_id) for item in checked.lines] == [(1, "a"), (3, "b")]
    assert checked.model == "gpt-4o-mini"
    assert checked.lines[0].body["messages"] == [{"role": "user", "content": "hi"}]


def test_each_broken_line_is_reported_with_its_number_code_and_param() -> None:
    content = jsonl(
        line("a"),
        "{not json",
        line("b", method="GET"),
        line("c", url="/v1/embeddings"),
        line("a"),
        line("d", model="gpt-4o"),
        json.dumps({"method": "POST", "url": CHAT, "body": {"model": "gpt-4o-mini"}}),
        line("e", body=[1]),
        line("f", body={"messages": []}),
    )
    checked = check_batch_input(content, CHAT)
    assert not checked.valid
    found = [(error["line"], error["code"], error["param"]) for error in checked.errors]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "invalid_method", "method"),
        (4, "invalid_url", "url"),
        (5, "duplicate_custom_id", "custom_id"),
        (6, "mismatched_model", "body.model"),
        (7, "missing_required_parameter", "custom_id"),
        (8, "invalid_type", "body"),
        (9, "missing_required_parameter", "body.model"),
    ]
    assert all(set(error) == {"code", "message", "param", "line"} for error in checked.errors)
    assert all(error["message"] for error in checked.errors)


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "empty_file"), (b"\n  \n", "empty_file"), (b"\xff\xfe", "invalid_json_line")],
)
def test_file_wide_errors_have_no_line(content: bytes, code: str) -> None:
    checked = check_batch_input(content, CHAT)
    assert [(error["code"], error["line"]) for error in checked.errors] == [(code, None)]


def test_more_than_fifty_thousand_requests_is_refused() -> None:
    content = jsonl(*(line(f"r{index}") for index in range(50_001)))
    checked = check_batch_input(content, CHAT)
    assert [error["code"] for error in checked.errors] == ["too_many_tasks"]


def test_response_record_has_openai_batch_output_shape() -> None:
    record = response_record("r1", 200, {"object": "chat.completion"})
    assert set(record) == {"id", "custom_id", "response", "error"}
    assert record["id"].startswith("batch_req_")
    assert record["custom_id"] == "r1"
    assert record["error"] is None
    assert record["response"]["status_code"] == 200
    assert record["response"]["request_id"].startswith("req_")
    assert record["response"]["body"] == {"object": "chat.completion"}


@pytest.mark.parametrize("code", ["batch_expired", "batch_cancelled"])
def test_not_run_record_carries_an_error_and_no_response(code: str) -> None:
    record = not_run_record("r9", code)
    assert record["response"] is None
    assert record["custom_id"] == "r9"
    assert record["error"]["code"] == code
    assert record["error"]["message"]


def test_multipart_form_parts_are_read_with_their_filenames() -> None:
    boundary = "xyz123"
    body = (
        b"--xyz123\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\n'
        b"batch\r\n"
        b"--xyz123\r\n"
        b'Content-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b'{"a":1}\r\n{"b":2}\r\n'
        b"--xyz123--\r\n"
    )
    form = parse_form(body, boundary_of(f'multipart/form-data; boundary="{boundary}"'))
    assert form["purpose"].data == b"batch"
    assert form["purpose"].filename is None
    assert form["file"].data == b'{"a":1}\r\n{"b":2}'
    assert form["file"].filename == "in.jsonl"


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data"])
def test_a_body_that_is_not_a_multipart_form_is_refused(content_type: str) -> None:
    with pytest.raises(MultipartError):
        boundary_of(content_type)
