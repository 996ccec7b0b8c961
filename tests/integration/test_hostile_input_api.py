"""Hostile input over HTTP, on SQLite and on PostgreSQL alike: every body, path and query a tenant can
send gets a 4xx naming the parameter, nothing is half stored, and one bad item of a bulk request is
refused on its own. Also the output-token bounds that keep one job from draining a shared bucket."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.factories import chat_request
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[TestClient]:
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    settings = load_settings(database_url=url, redis_url=redis_url)
    key = create_key(url, f"hostile-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings), headers=bearer(key)) as test_client:
        yield test_client


def _post_raw(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode("utf-8"), headers={"content-type": "application/json"})


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _chat_text(extra: str, *, content: str = '"hi"', metadata: str = "null") -> str:
    return (
        '{"kind": "chat", "metadata": ' + metadata + ', "request": {"model": "gpt-4o-mini", '
        '"messages": [{"role": "user", "content": ' + content + "}]" + extra + "}}"
    )


HOSTILE_BODIES = {
    "nested 300 deep": (_chat_text(', "response_format": ' + _nested(300)), "request.response_format"),
    "NUL in a message": (_chat_text("", content='"a\\u0000b"'), "request.messages.0.content"),
    "NUL in a key": (_chat_text(', "x\\u0000": 1'), "request.x\\u0000"),
    "NaN": (_chat_text(', "temperature": NaN'), "request.temperature"),
    "Infinity": (_chat_text(', "top_p": -Infinity'), "request.top_p"),
    "1e309": (_chat_text(', "logit_bias": {"50256": 1e309}'), "request.logit_bias.50256"),
    "2^64": (_chat_text(', "seed": 18446744073709551616'), "request.seed"),
    "lone surrogate": (_chat_text("", content='"\\ud800"'), "request.messages.0.content"),
    "NUL in metadata": (_chat_text("", metadata='{"k": "v\\u0000"}'), "metadata"),
    "surrogate in metadata key": (_chat_text("", metadata='{"\\udfff": "v"}'), "metadata"),
}


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
def test_a_hostile_job_body_gets_422_naming_the_parameter_and_stores_nothing(
    client: TestClient, case: str
) -> None:
    text, param = HOSTILE_BODIES[case]
    response = _post_raw(client, "/v1/jobs", text)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["param"] == param or error["param"].startswith(f"{param}.0.0.0"), error["param"]
    listed = client.get("/v1/jobs")
    assert listed.status_code == 200 and listed.json()["data"] == []


def test_one_hostile_bulk_item_is_refused_on_its_own(client: TestClient) -> None:
    good = _chat_text("")
    items = [good, HOSTILE_BODIES["NUL in a message"][0], good, HOSTILE_BODIES["lone surrogate"][0]]
    items += [HOSTILE_BODIES["nested 300 deep"][0], HOSTILE_BODIES["surrogate in metadata key"][0]]
    response = _post_raw(client, "/v1/jobs/bulk", '{"jobs": [' + ", ".join(items) + "]}")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 4)
    statuses = [item["status"] for item in body["data"]]
    assert statuses == ["queued", "rejected", "queued", "rejected", "rejected", "rejected"]
    assert body["data"][1]["error"]["param"] == "jobs.1.request.messages.0.content"
    assert body["data"][4]["error"]["param"].startswith("jobs.4.request.response_format.0.0")
    assert len(client.get("/v1/jobs").json()["data"]) == 2
    for item in body["data"]:
        if item["id"]:
            assert client.get(f"/v1/jobs/{item['id']}").status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "/v1/jobs/job_abc%00def",
        "/v1/jobs?after=job_%00",
        "/v1/jobs?tier=standard%00",
        "/v1/batches/batch_%00",
        "/v1/files/file-%00/content",
        "/v1/jobs/job_x%00/webhook-deliveries",
    ],
)
def test_a_nul_in_a_path_id_cursor_or_filter_gets_400(client: TestClient, target: str) -> None:
    response = client.get(target)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_nul_in_a_batch_s_metadata_gets_422(client: TestClient) -> None:
    body = '{"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h", '
    response = _post_raw(client, "/v1/batches", body + '"metadata": {"k": "\\u0000"}}')
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "metadata"
    hook = _post_raw(client, "/v1/batches", body + '"webhook_url": "https://example.com/\\u0000"}')
    assert hook.status_code == 422 and hook.json()["error"]["param"] == "webhook_url", hook.text
    file_id = body.replace('"file-x"', '"file-\\u0000"')
    response = _post_raw(client, "/v1/batches", file_id[:-2] + "}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "input_file_id"


def test_a_nul_in_an_uploaded_file_name_is_refused(client: TestClient) -> None:
    line = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}})
    body = (
        b'--b0\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--b0\r\nContent-Disposition: form-data; name="file"; filename="in\x00put.jsonl"\r\n'
        b"Content-Type: application/jsonl\r\n\r\n" + line.encode() + b"\r\n--b0--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=b0"}
    response = client.post("/v1/files", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "file"


@pytest.mark.parametrize(
    ("field", "kind", "model", "limit"),
    [
        ("max_tokens", "chat", "gpt-5-mini", 128000),
        ("max_completion_tokens", "chat", "gpt-4o-mini", 16384),
        ("max_output_tokens", "response", "gpt-4.1-mini", 32768),
    ],
)
def test_output_tokens_are_bounded_by_the_model(
    client: TestClient, field: str, kind: str, model: str, limit: int
) -> None:
    request: dict[str, Any] = {"model": model}
    if kind == "chat":
        request["messages"] = [{"role": "user", "content": "hi"}]
    else:
        request["input"] = "hi"
    for asked in (2_000_000_000, 2**62, limit + 1):
        response = client.post("/v1/jobs", json={"kind": kind, "request": {**request, field: asked}})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("max_tokens_too_large", f"request.{field}")
    accepted = client.post("/v1/jobs", json={"kind": kind, "request": {**request, field: limit}})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["estimated_tokens"] >= limit


def test_a_float_max_tokens_of_1e20_is_refused(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", json={"kind": "chat", "request": {**chat_request(), "max_tokens": 1e20}}
    )
    assert response.status_code == 422, response.text


def test_a_model_name_with_spaces_is_routed_and_forwarded_as_the_same_trimmed_name(
    client: TestClient,
) -> None:
    request = {**chat_request(), "model": "  gpt-4o-mini \t"}
    response = client.post("/v1/jobs", json={"kind": "chat", "request": request})
    assert response.status_code == 202, response.text
    job = client.get(f"/v1/jobs/{response.json()['id']}").json()
    assert job["model"] == "gpt-4o-mini" and job["request"]["model"] == "gpt-4o-mini"


def test_a_body_nested_past_the_parser_s_depth_gets_400_invalid_json(client: TestClient) -> None:
    response = _post_raw(client, "/v1/jobs", '{"kind": "chat", "request": ' + _nested(200_000) + "}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json", response.text
