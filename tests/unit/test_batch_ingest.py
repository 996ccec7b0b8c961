"""Checking batch input lines (OpenAI's error codes, line numbers and params), splitting a chunked file
into lines, and the checks an upload passes while it streams."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from config.tiers import DEFAULT_TIERS_FILE, load_tiers
from domain.batches.files import UploadScanner
from domain.batches.ingest import LineChecker, LineError, RequestLine, iter_lines
from domain.batches.schemas import Endpoint
from domain.errors import InvalidRequest, LimitExceeded, PayloadTooLarge
from domain.ids import _B32, _encode, new_id, new_ids
from domain.jobs.input_limits import InputLimits
from domain.status import JobKind
from tests.factories import chat_request, embedding_request, image_request, response_request, vision_request
from tests.support.openai_schema import assert_conforms

pytestmark = pytest.mark.unit


def _checker(endpoint: Endpoint = Endpoint.chat) -> LineChecker:
    return LineChecker(
        endpoint, load_tiers(DEFAULT_TIERS_FILE), InputLimits(max_messages=4), default_max_tokens=100
    )


def _line(custom_id: Any = "r1", url: str = "/v1/chat/completions", **overrides: Any) -> bytes:
    item: dict[str, Any] = {"custom_id": custom_id, "method": "POST", "url": url, "body": chat_request()}
    item.update(overrides)
    return json.dumps(item).encode()


@pytest.mark.parametrize(
    ("endpoint", "body", "kind", "queue"),
    [
        (Endpoint.chat, chat_request(), JobKind.chat, "tier.standard"),
        (Endpoint.chat, vision_request(), JobKind.vision, "tier.premium"),
        (Endpoint.embeddings, embedding_request(), JobKind.embedding, "tier.embeddings"),
        (Endpoint.images, image_request(), JobKind.image, "tier.images"),
        (Endpoint.responses, response_request(), JobKind.response, "tier.standard"),
    ],
)
def test_valid_lines_become_jobs_of_the_endpoints_kind(
    endpoint: Endpoint, body: dict[str, Any], kind: JobKind, queue: str
) -> None:
    raw = _line(url=endpoint.value, body=body)
    checked = _checker(endpoint).check(7, raw)
    assert isinstance(checked, RequestLine), checked
    assert (checked.line, checked.custom_id, checked.kind, checked.queue) == (7, "r1", kind, queue)
    assert checked.model == body["model"] and checked.body == body
    assert checked.estimated_tokens > 0


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        (b"{not json", "invalid_json_line", None),
        (b'{"custom_id": "x", "value": NaN}', "invalid_json_line", None),
        (b"[1, 2, 3]", "invalid_json_line", None),
        (b"[" * 100_000, "invalid_json_line", None),
        (
            json.dumps({"method": "POST", "url": "/v1/chat/completions", "body": {}}).encode(),
            "missing_required_parameter",
            "custom_id",
        ),
        (_line(method=None), "missing_required_parameter", "method"),
        (_line(url=None), "missing_required_parameter", "url"),  # type: ignore[arg-type]
        (_line(body=None), "missing_required_parameter", "body"),
        (_line(custom_id=12), "invalid_custom_id", "custom_id"),
        (_line(custom_id=""), "invalid_custom_id", "custom_id"),
        (_line(custom_id="x" * 513), "invalid_custom_id", "custom_id"),
        (_line(method="GET"), "invalid_method", "method"),
        (_line(url="/v1/embeddings"), "url_mismatch", "url"),
        (_line(url="/chat/completions"), "url_mismatch", "url"),
        (_line(body="hello"), "invalid_body", "body"),
        (_line(body={"model": "gpt-4o-mini", "messages": []}), "invalid_body", "body.messages"),
        (_line(body={"messages": [{"role": "user", "content": "x"}]}), "invalid_body", "body.model"),
        (_line(body={**chat_request(), "stream": True}), "streaming_unsupported", "body.stream"),
        (_line(body=chat_request(model="no-such-model")), "model_not_found", "body.model"),
        (
            _line(body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}] * 5}),
            "too_many_messages",
            "body.messages",
        ),
    ],
)
def test_invalid_lines_get_openai_style_errors(raw: bytes, code: str, param: str | None) -> None:
    checked = _checker().check(3, raw)
    assert isinstance(checked, LineError), checked
    assert (checked.code, checked.param, checked.line) == (code, param, 3)
    assert checked.message
    assert_conforms("BatchError", checked.as_dict())


def test_a_repeated_custom_id_is_refused_on_its_second_line() -> None:
    checker = _checker()
    assert isinstance(checker.check(1, _line("a")), RequestLine)
    assert isinstance(checker.check(2, _line("b")), RequestLine)
    duplicate = checker.check(3, _line("a"))
    assert isinstance(duplicate, LineError)
    assert (duplicate.code, duplicate.param, duplicate.line) == ("duplicate_custom_id", "custom_id", 3)


def test_an_invalid_line_does_not_reserve_its_custom_id() -> None:
    checker = _checker()
    assert isinstance(checker.check(1, _line("a", method="PUT")), LineError)
    assert isinstance(checker.check(2, _line("a")), RequestLine)


def test_chat_bodies_with_an_image_part_become_vision_jobs_only_on_the_chat_endpoint() -> None:
    text_only = _checker().check(1, _line("a", body=chat_request(model="gpt-4o")))
    with_image = _checker().check(1, _line("b", body=vision_request()))
    assert isinstance(text_only, RequestLine) and text_only.kind is JobKind.chat
    assert isinstance(with_image, RequestLine) and with_image.kind is JobKind.vision


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 10_000])
def test_lines_are_split_across_any_chunking_and_numbered_as_in_the_file(size: int) -> None:
    text = b'{"a": 1}\n\n  \n{"b": "\xc3\xa9"}\r\n{"c": 3}'
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    assert list(iter_lines(chunks)) == [(1, b'{"a": 1}'), (4, b'{"b": "\xc3\xa9"}\r'), (5, b'{"c": 3}')]


def test_a_final_newline_adds_no_line() -> None:
    assert list(iter_lines([b"x\n", b"y\n"])) == [(1, b"x"), (2, b"y")]
    assert list(iter_lines([])) == []


def _scan(data: bytes, *, chunk: int = 7, **limits: int) -> UploadScanner:
    scanner = UploadScanner(
        max_bytes=limits.get("max_bytes", 10_000),
        max_lines=limits.get("max_lines", 100),
        max_line_bytes=limits.get("max_line_bytes", 1000),
    )
    for start in range(0, len(data), chunk):
        scanner.feed(data[start : start + chunk])
    scanner.finish()
    return scanner


def test_the_scanner_counts_bytes_and_non_blank_lines() -> None:
    data = "é1\n\n é2 \r\n   \né3".encode()
    scanner = _scan(data)
    assert (scanner.size, scanner.lines) == (len(data), 3)


@pytest.mark.parametrize(
    ("data", "limits", "error", "code"),
    [
        (b"x" * 101, {"max_bytes": 100}, PayloadTooLarge, "file_too_large"),
        (b"a\nb\nc\n", {"max_lines": 2}, LimitExceeded, "too_many_lines"),
        (b"short\n" + b"y" * 50 + b"\n", {"max_line_bytes": 40}, LimitExceeded, "line_too_large"),
        (b"ok\n\xff\xfe\n", {}, InvalidRequest, "invalid_file_encoding"),
        (b"ok\n\xc3", {}, InvalidRequest, "invalid_file_encoding"),
        (b"\n \n\t\n", {}, InvalidRequest, "empty_file"),
        (b"", {}, InvalidRequest, "empty_file"),
    ],
)
def test_the_scanner_refuses_an_upload_at_the_first_broken_limit(
    data: bytes, limits: dict[str, int], error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        _scan(data, **limits)
    assert getattr(caught.value, "code", None) == code


def test_the_line_limit_names_the_line_and_stops_before_reading_the_rest() -> None:
    scanner = UploadScanner(max_bytes=10**9, max_lines=10, max_line_bytes=10)
    scanner.feed(b"one\ntwo\n")
    with pytest.raises(LimitExceeded, match="line 3"):
        scanner.feed(b"x" * 11)


def test_ids_made_in_bulk_sort_in_creation_order_like_single_ids() -> None:
    before = new_id("job")
    bulk = new_ids("job", 1000)
    after = new_id("job")
    assert [before, *bulk, after] == sorted([before, *bulk, after])
    assert len(set(bulk)) == 1000 and all(len(item) == len(before) for item in bulk)
    value = 2**80 - 12345
    assert base64.b32encode(value.to_bytes(10, "big")).translate(_B32).decode() == _encode(value, 16)
