"""A batch's life on SQLite and PostgreSQL, over the HTTP API with the worker steps called directly:
fan-out, live counts, finalization into output and error files, failure, cancel, expiry, listing and
webhook events. Batch objects are checked against OpenAI's schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from config.settings import Settings, load_settings
from domain.batches import repository as batch_repository
from domain.batches.lifecycle import run_finalize, run_ingest, run_tick
from domain.batches.schemas import BatchCreate
from domain.storage.models import Batch, WebhookDelivery, utcnow
from domain.storage.sessions import session_scope
from tests.factories import embedding_request, vision_request
from tests.support import batches as support
from tests.support.batches import (
    batch_jobs,
    chat_answer,
    fail,
    jsonl,
    request_line,
    retire_tenant,
    start,
    succeed,
)
from tests.support.keys import bearer, create_key
from tests.support.openai_schema import assert_conforms, assert_output_line, page_without_nulls, without_nulls

pytestmark = pytest.mark.integration

database_url = support.database_url
sessions = support.sessions
Sessions = sessionmaker[Session]


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(database_url=database_url, redis_url=redis_url)


@pytest.fixture
def tenant(sessions: Sessions) -> Iterator[str]:
    name = f"batch-{uuid.uuid4().hex[:8]}"
    yield name
    retire_tenant(sessions, name)


@pytest.fixture
def client(settings: Settings, database_url: str, tenant: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=bearer(create_key(database_url, tenant))) as test_client:
        yield test_client


def _create(
    client: TestClient, lines: list[str], endpoint: str = "/v1/chat/completions", **extra: Any
) -> dict[str, Any]:
    uploaded = client.post("/v1/files", files={"file": ("in.jsonl", jsonl(lines))}, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    body = {"input_file_id": uploaded.json()["id"], "endpoint": endpoint, "completion_window": "24h", **extra}
    created = client.post("/v1/batches", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "validating"
    return dict(created.json())


def _get(client: TestClient, batch_id: str) -> dict[str, Any]:
    batch = client.get(f"/v1/batches/{batch_id}").json()
    assert_conforms("Batch", without_nulls(batch))
    return dict(batch)


def _lines(client: TestClient, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    text = client.get(f"/v1/files/{file_id}/content").text
    return [json.loads(line) for line in text.splitlines()]


def test_a_valid_file_fans_out_and_finalizes_into_output_and_error_files(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    lines = [request_line(f"r{i}") for i in range(4)] + [request_line("v", vision_request())]
    batch = _create(client, lines, metadata={"run": "nightly"})
    outcome, _ = run_ingest(sessions, batch["id"], settings)
    assert outcome.status == "in_progress" and outcome.total == 5
    jobs = batch_jobs(sessions, batch["id"])
    assert sorted(job.custom_id or "" for job in jobs) == ["r0", "r1", "r2", "r3", "v"]
    by_custom_id = {job.custom_id: job for job in jobs}
    assert by_custom_id["v"].kind == "vision" and by_custom_id["v"].tier == "premium"
    assert {job.kind for job in jobs if job.custom_id != "v"} == {"chat"}
    # queued in the backlog (never sent), below interactive jobs: the dispatcher sends them
    assert all(job.status == "queued" and job.priority < 0 and job.dispatched_at is None for job in jobs)

    running = _get(client, batch["id"])
    assert running["status"] == "in_progress" and running["in_progress_at"] is not None
    assert running["request_counts"] == {"total": 5, "completed": 0, "failed": 0}
    shown = client.get(f"/v1/jobs/{by_custom_id['v'].id}").json()
    assert (shown["batch_id"], shown["custom_id"]) == (batch["id"], "v")
    for custom_id in ("r0", "r1", "v"):
        succeed(sessions, by_custom_id[custom_id].id, chat_answer(custom_id))
    error_body = {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}}
    fail(
        sessions,
        by_custom_id["r2"].id,
        error_type="invalid_request_error",
        message="bad",
        status_code=400,
        body=error_body,
    )
    assert run_finalize(sessions, batch["id"], settings).status is None  # r3 is still queued
    live = _get(client, batch["id"])
    assert live["request_counts"] == {"total": 5, "completed": 3, "failed": 1}
    assert live["usage"]["input_tokens"] == 15 and live["usage"]["total_tokens"] == 21
    fail(sessions, by_custom_id["r3"].id, error_type="timeout", message="no answer within 60s")

    assert run_finalize(sessions, batch["id"], settings).status == "completed"
    done = _get(client, batch["id"])
    assert done["status"] == "completed" and done["completed_at"] and done["finalizing_at"]
    assert done["request_counts"] == {"total": 5, "completed": 3, "failed": 2}
    assert done["usage"]["output_tokens"] == 6 and done["metadata"] == {"run": "nightly"}
    outputs, errors = _lines(client, done["output_file_id"]), _lines(client, done["error_file_id"])
    for line in outputs + errors:
        assert_output_line(line)
    assert {line["custom_id"]: line["response"]["body"]["id"] for line in outputs} == {
        "r0": "chatcmpl-r0",
        "r1": "chatcmpl-r1",
        "v": "chatcmpl-v",
    }
    by_error = {line["custom_id"]: line for line in errors}
    assert by_error["r2"]["response"] == {
        "status_code": 400,
        "request_id": by_error["r2"]["response"]["request_id"],
        "body": error_body,
    }
    assert by_error["r3"]["error"] == {"code": "timeout", "message": "no answer within 60s"}
    output_file = client.get(f"/v1/files/{done['output_file_id']}").json()
    assert output_file["purpose"] == "batch_output" and output_file["filename"].endswith("_output.jsonl")
    assert run_finalize(sessions, batch["id"], settings).status is None  # finished once


def test_an_invalid_file_fails_with_every_error_and_creates_no_jobs(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    lines = [
        request_line("a"),
        "{not json",
        request_line("a"),
        request_line("b", url="/v1/embeddings"),
        request_line("c", {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
    ]
    batch = _create(client, lines)
    outcome, _ = run_ingest(sessions, batch["id"], settings)
    assert outcome.status == "failed"
    failed = _get(client, batch["id"])
    assert failed["status"] == "failed" and failed["failed_at"] is not None
    assert [(error["code"], error["line"]) for error in failed["errors"]["data"]] == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("url_mismatch", 4),
        ("model_not_found", 5),
    ]
    assert batch_jobs(sessions, batch["id"]) == []
    assert client.post(f"/v1/batches/{batch['id']}/cancel").status_code == 409


def test_poison_lines_fail_their_line_not_the_ingest(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    """A NUL, an output-token count past any model, a non-finite number or a deep nest is a line error
    like any other: the batch fails with them instead of staying in ``validating``."""
    chat = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]'
    envelope = '{"custom_id": "%s", "method": "POST", "url": "/v1/chat/completions", "body": %s}'
    lines = [
        request_line("ok"),
        envelope % ("nul", '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a\\u0000"}]}'),
        envelope % ("huge", chat + ', "max_tokens": 1e20}'),
        envelope % ("inf", chat + ', "temperature": 1e309}'),
        envelope % ("deep", chat + ', "metadata": ' + "[" * 300 + "]" * 300 + "}"),
        envelope % ("id\\u0000", chat + "}"),
        (envelope % ("url", chat + "}")).replace("/v1/chat/completions", "/v1/\\u0000"),
    ]
    batch = _create(client, lines)
    outcome, _ = run_ingest(sessions, batch["id"], settings)
    assert outcome.status == "failed"
    failed = _get(client, batch["id"])
    assert failed["status"] == "failed"
    assert [(error["code"], error["line"], error["param"]) for error in failed["errors"]["data"]] == [
        ("invalid_body", 2, "body.messages.0.content"),
        ("invalid_body", 3, "body.max_tokens"),
        ("invalid_body", 4, "body.temperature"),
        ("invalid_body", 5, "body.metadata" + ".0" * 63),
        ("invalid_custom_id", 6, "custom_id"),
        ("url_mismatch", 7, "url"),
    ]
    assert batch_jobs(sessions, batch["id"]) == []


def test_cancel_stops_queued_jobs_and_keeps_the_results_finished_so_far(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    batch = _create(client, [request_line(f"r{i}") for i in range(4)])
    run_ingest(sessions, batch["id"], settings)
    jobs = batch_jobs(sessions, batch["id"])
    succeed(sessions, jobs[0].id, chat_answer("done-before"))
    claim = start(sessions, jobs[1].id)
    cancelling = client.post(f"/v1/batches/{batch['id']}/cancel").json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    assert [job.status for job in batch_jobs(sessions, batch["id"])] == [
        "succeeded",
        "running",
        "cancelled",
        "cancelled",
    ]
    assert run_finalize(sessions, batch["id"], settings).status is None  # the running call has not returned
    assert client.post(f"/v1/batches/{batch['id']}/cancel").json()["status"] == "cancelling"
    with session_scope(sessions) as session:  # the in-flight call returns; its answer is kept
        from domain.jobs import repository
        from domain.tokens.estimates import usage_columns

        answer = chat_answer("in-flight")
        repository.complete(
            session,
            claim,
            result=answer,
            usage=answer["usage"],
            columns=usage_columns("chat", answer["usage"]),
        )
    assert run_finalize(sessions, batch["id"], settings).status == "cancelled"
    cancelled = _get(client, batch["id"])
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] is not None
    assert cancelled["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    outputs = _lines(client, cancelled["output_file_id"])
    assert sorted(line["custom_id"] for line in outputs) == ["r0", "r1"]
    errors = _lines(client, cancelled["error_file_id"])
    assert sorted(line["custom_id"] for line in errors) == ["r2", "r3"]
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}


def test_a_batch_past_its_completion_window_expires_with_batch_expired_lines(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    batch = _create(client, [request_line("early"), request_line("late")])
    run_ingest(sessions, batch["id"], settings)
    jobs = batch_jobs(sessions, batch["id"])
    succeed(sessions, jobs[0].id, chat_answer("early"))
    later = utcnow() + timedelta(hours=24, minutes=1)
    tick = run_tick(sessions, settings, now=later)
    assert batch["id"] in tick.to_finalize and tick.expired >= 1
    assert run_finalize(sessions, batch["id"], settings, now=later).status == "expired"
    expired = _get(client, batch["id"])
    assert expired["status"] == "expired" and expired["expired_at"] is not None
    assert [line["custom_id"] for line in _lines(client, expired["output_file_id"])] == ["early"]
    (late,) = _lines(client, expired["error_file_id"])
    assert late["custom_id"] == "late" and late["response"] is None
    assert late["error"]["code"] == "batch_expired"


def test_list_pages_newest_first_with_after(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    ids = [_create(client, [request_line("x")], "/v1/chat/completions")["id"] for _ in range(3)]
    first = client.get("/v1/batches", params={"limit": 2}).json()
    assert [item["id"] for item in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    assert_conforms("ListBatchesResponse", page_without_nulls(first))
    rest = client.get("/v1/batches", params={"limit": 2, "after": first["last_id"]}).json()
    assert [item["id"] for item in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert client.get("/v1/batches", params={"limit": 101}).status_code == 422


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"input_file_id": "file-nope"}, 404, "input_file_id"),
        ({"endpoint": "/v1/completions"}, 422, "endpoint"),
        ({"completion_window": "48h"}, 422, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 422, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, 422, "metadata"),
        ({"metadata": {"k": "v" * 513}}, 422, "metadata"),
        ({"surprise": True}, 422, "surprise"),
    ],
)
def test_create_refuses_what_openai_refuses(
    client: TestClient, change: dict[str, Any], status: int, param: str
) -> None:
    uploaded = client.post(
        "/v1/files", files={"file": ("a.jsonl", jsonl([request_line("a")]))}, data={"purpose": "batch"}
    )
    body = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    response = client.post("/v1/batches", json={**body, **change})
    assert response.status_code == status, response.text
    assert (response.json()["error"]["param"] or "").startswith(param)


def test_cancel_during_validation_ends_cancelled_without_jobs(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    batch = _create(client, [request_line("a"), request_line("b", embedding_request(), "/v1/embeddings")])
    assert client.post(f"/v1/batches/{batch['id']}/cancel").json()["status"] == "cancelling"
    outcome, _ = run_ingest(sessions, batch["id"], settings)
    assert outcome.status == "skipped" and batch_jobs(sessions, batch["id"]) == []
    assert run_finalize(sessions, batch["id"], settings).status == "cancelled"
    ended = _get(client, batch["id"])
    assert ended["output_file_id"] is None and ended["error_file_id"] is None


def test_terminal_batches_record_their_webhook_event(
    sessions: Sessions, settings: Settings, tenant: str
) -> None:
    with session_scope(sessions) as session:
        from domain.batches import file_repository

        stored = file_repository.create_file(
            session, tenant_id=tenant, filename="a.jsonl", purpose="batch", expires_at=None
        )
        file_repository.add_chunk(session, stored.id, 0, jsonl([request_line("a"), "oops"]))
        file_repository.mark_processed(session, stored.id, size=10, lines=2)
        body = BatchCreate.model_validate({
            "input_file_id": stored.id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "webhook_url": "https://hooks.example.com/batches",
        })  # fmt: skip
        batch_id = batch_repository.create(session, body, tenant_id=tenant, now=utcnow()).id
    _, step = run_ingest(sessions, batch_id, settings)
    assert step.status == "failed" and len(step.deliveries) == 1
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, step.deliveries[0])
        assert delivery is not None and delivery.event_type == "batch.failed"
        assert delivery.url == "https://hooks.example.com/batches" and delivery.subject_id == batch_id
        event = json.loads(delivery.payload)
        assert event["type"] == "batch.failed" and event["data"]["id"] == batch_id
        assert event["data"]["errors"]["data"][0]["line"] == 2


def test_the_tick_retries_lost_ingests_and_ends_cancelled_jobs_whose_worker_died(
    client: TestClient, sessions: Sessions, settings: Settings
) -> None:
    lost = _create(client, [request_line("a")])
    assert lost["id"] in run_tick(sessions, settings, now=utcnow() + timedelta(minutes=1)).to_ingest
    batch = _create(client, [request_line("a"), request_line("b")])
    run_ingest(sessions, batch["id"], settings)
    jobs = batch_jobs(sessions, batch["id"])
    start(sessions, jobs[0].id)
    client.post(f"/v1/batches/{batch['id']}/cancel")
    tick = run_tick(sessions, settings, now=utcnow() + timedelta(hours=1))
    assert [job.status for job in batch_jobs(sessions, batch["id"])] == ["cancelled", "cancelled"]
    assert batch["id"] in tick.to_finalize
    with session_scope(sessions) as session:
        stored = session.scalars(select(Batch).where(Batch.id == batch["id"])).one()
        assert stored.status == "cancelling"
