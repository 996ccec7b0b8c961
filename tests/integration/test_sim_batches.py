"""The simulator's Batch API as a real process, driven by the official ``openai`` SDK.

Lifecycle, a failing line, cancel, expiry and a validation failure; every batch object, file object and
output line is checked against OpenAI's spec. Batches move on the wall clock, so the tests poll with
deadlines and never assert on durations.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI
from openai.types import Batch

from simulator.process import running_simulator
from tests.support.openai_schema import assert_conforms, assert_output_line, page_without_nulls, without_nulls

pytestmark = pytest.mark.integration

TIERS = """
[tiers.chat.models."gpt-4o-mini"]
rpm = 1
tpm = 1000

[tiers.embed.models."text-embedding-3-small"]
rpm = 1
tpm = 1000
"""
CHAT = "/v1/chat/completions"
DONE = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tiers = tmp_path_factory.mktemp("sim-batches") / "tiers.toml"
    tiers.write_text(TIERS)
    args = ["--tiers", str(tiers), "--require-key", "sk-test", "--default-max-tokens", "16"]
    args += ["--batch-validating-seconds", "0.2", "--batch-processing-seconds", "0.4"]
    args += ["--batch-finalizing-seconds", "0.2", "--batch-cancelling-seconds", "0.2"]
    with running_simulator(args) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[OpenAI]:
    sdk = OpenAI(base_url=base_url + "/v1", api_key="sk-test", max_retries=0, timeout=10)
    with sdk:
        yield sdk


def admin(base_url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, method="POST" if data else "GET")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def chat_line(custom_id: str, user: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Say hello to {custom_id}."}],
        "max_tokens": 8,
    }
    if user is not None:
        body["user"] = user
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def upload(client: OpenAI, lines: list[dict[str, Any]]) -> str:
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    created = client.files.create(file=("input.jsonl", io.BytesIO(content)), purpose="batch")
    raw = client.files.with_raw_response.retrieve(created.id).http_response.json()
    assert_conforms("OpenAIFile", without_nulls(raw))
    assert created.purpose == "batch"
    assert created.bytes == len(content)
    return created.id


def wait_for(client: OpenAI, batch_id: str, statuses: tuple[str, ...], deadline_s: float = 30) -> Batch:
    deadline = time.monotonic() + deadline_s
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses or time.monotonic() > deadline:
            assert batch.status in statuses, batch
            return batch
        time.sleep(0.05)


def conforming(client: OpenAI, batch_id: str) -> dict[str, Any]:
    raw = dict(client.batches.with_raw_response.retrieve(batch_id).http_response.json())
    assert_conforms("Batch", without_nulls(raw))
    return raw


def file_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    lines = [json.loads(raw) for raw in client.files.content(file_id).text.splitlines()]
    for line in lines:
        assert_output_line(line)
    return lines


def test_a_batch_completes_with_a_failed_line_in_the_error_file(client: OpenAI, base_url: str) -> None:
    before = admin(base_url, "/_stats")
    lines = [chat_line(f"ok-{index}") for index in range(3)] + [chat_line("boom", "sim:status=500")]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint=CHAT,
        completion_window="24h",
        metadata={"purpose": "nightly"},
    )
    assert batch.status == "validating"
    assert batch.id.startswith("batch_")
    done = wait_for(client, batch.id, DONE)
    assert done.status == "completed"
    raw = conforming(client, batch.id)
    assert raw["metadata"] == {"purpose": "nightly"}
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 3, 1)
    assert done.in_progress_at is not None and done.finalizing_at is not None
    assert done.completed_at is not None
    assert done.created_at <= done.in_progress_at <= done.finalizing_at <= done.completed_at
    output = file_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == ["ok-0", "ok-1", "ok-2"]
    for line in output:
        assert line["response"]["status_code"] == 200
        assert_conforms("CreateChatCompletionResponse", line["response"]["body"])
    errors = file_lines(client, done.error_file_id)
    assert [(line["custom_id"], line["response"]["status_code"]) for line in errors] == [("boom", 500)]
    assert done.usage is not None
    prompt_tokens = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    assert done.usage.input_tokens == prompt_tokens
    after = admin(base_url, "/_stats")
    # the rate limit (1 request a minute) never applied, and the live counters did not move
    assert after["requests_total"] == before["requests_total"]
    assert after["batch_lines"] == before["batch_lines"] + 4
    assert after["batch"]["usage"]["prompt_tokens"] - before["batch"]["usage"]["prompt_tokens"] == (
        done.usage.input_tokens
    )
    listed = client.batches.with_raw_response.list(limit=1).http_response.json()
    assert_conforms("ListBatchesResponse", page_without_nulls(listed))


def test_an_invalid_file_fails_validation_with_line_numbers(client: OpenAI) -> None:
    lines = [chat_line("a"), chat_line("a"), {**chat_line("b"), "method": "GET"}]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h")
    failed = wait_for(client, batch.id, DONE)
    assert failed.status == "failed"
    assert failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data is not None
    assert [(error.code, error.line) for error in failed.errors.data] == [
        ("duplicate_custom_id", 2),
        ("invalid_method", 3),
    ]
    conforming(client, batch.id)


def test_cancel_keeps_answered_lines_and_cancels_the_rest(client: OpenAI, base_url: str) -> None:
    admin(base_url, "/_control", {"batch_processing_seconds": 30})
    try:
        lines = [chat_line(f"c-{index}") for index in range(20)]
        file_id = upload(client, lines)
        batch = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    finally:
        admin(base_url, "/_control", {"batch_processing_seconds": 0.4})
    deadline = time.monotonic() + 20
    while True:
        running = client.batches.retrieve(batch.id)
        assert running.request_counts is not None
        if running.request_counts.completed >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    done = wait_for(client, batch.id, DONE)
    assert done.status == "cancelled"
    assert done.cancelling_at is not None and done.cancelled_at is not None
    counts = done.request_counts
    assert counts is not None
    assert counts.total == 20
    assert 1 <= counts.completed < 20
    assert counts.completed + counts.failed == 20
    conforming(client, batch.id)
    answered = file_lines(client, done.output_file_id)
    cancelled = file_lines(client, done.error_file_id)
    assert len(answered) == counts.completed
    assert {line["error"]["code"] for line in cancelled} == {"batch_cancelled"}
    assert {line["custom_id"] for line in answered + cancelled} == {line["custom_id"] for line in lines}


def test_a_batch_told_to_expire_answers_half_and_expires(client: OpenAI, base_url: str) -> None:
    assert admin(base_url, "/_control", {"expire_next_batches": 1})["expire_next_batches"] == 1
    lines = [chat_line(f"e-{index}") for index in range(4)]
    batch = client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h")
    done = wait_for(client, batch.id, DONE)
    assert done.status == "expired"
    assert done.expired_at is not None
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    conforming(client, batch.id)
    assert len(file_lines(client, done.output_file_id)) == 2
    expired = file_lines(client, done.error_file_id)
    assert [line["error"]["code"] for line in expired] == ["batch_expired", "batch_expired"]
    assert admin(base_url, "/_stats")["batch"]["batches"]["expired"] >= 1


def test_an_embeddings_batch_and_the_files_list(client: OpenAI) -> None:
    line = {
        "custom_id": "emb-1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": "hello"},
    }
    file_id = upload(client, [line])
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    done = wait_for(client, batch.id, DONE)
    assert done.status == "completed"
    output = file_lines(client, done.output_file_id)
    assert_conforms("CreateEmbeddingResponse", output[0]["response"]["body"])
    listed = client.files.with_raw_response.list(purpose="batch_output").http_response.json()
    assert_conforms("ListFilesResponse", page_without_nulls(listed))
    assert done.output_file_id in [item["id"] for item in listed["data"]]
    deleted = client.files.delete(file_id)
    assert deleted.deleted is True
