"""Per-kind body validation and ids."""

from __future__ import annotations

import pytest

from domain.errors import InvalidRequest
from domain.ids import new_id
from domain.jobs.schemas import validate_body
from domain.status import JobKind
from tests.factories import REQUESTS, vision_request

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", list(JobKind))
def test_valid_bodies_return_their_model(kind: JobKind) -> None:
    body = REQUESTS[kind.value]()
    assert validate_body(kind, body) == body["model"]


@pytest.mark.parametrize(
    ("kind", "body", "param"),
    [
        (JobKind.chat, {"model": "m", "messages": []}, "request.messages"),
        (JobKind.chat, {"messages": [{"role": "user", "content": "x"}]}, "request.model"),
        (
            JobKind.chat,
            {"model": "m", "messages": [{"role": "boss", "content": "x"}]},
            "request.messages.0.role",
        ),
        (JobKind.chat, {"model": "m", "messages": [{"role": "user"}], "stream": "yes"}, "request.stream"),
        (
            JobKind.vision,
            {"model": "m", "messages": [{"role": "user", "content": "no image"}]},
            "request.messages",
        ),
        (JobKind.vision, vision_request(url="data:text/plain;base64,AAAA"), "request.messages"),
        (JobKind.embedding, {"model": "m", "input": []}, "request.input"),
        (JobKind.image, {"model": "m", "prompt": ""}, "request.prompt"),
    ],
)
def test_invalid_bodies_name_the_field(kind: JobKind, body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_body(kind, body)
    assert info.value.param == param


def test_ids_sort_by_creation() -> None:
    ids = [new_id("job") for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert new_id("job", now_ms=4_000_000_000_000) > ids[-1]
