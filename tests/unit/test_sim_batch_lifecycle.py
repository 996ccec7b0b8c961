"""The simulator's Files and Batch APIs in-process (ASGI transport) on a fake wall clock."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from config.tiers import parse_tiers
from simulator.app import SimulatorApp, build_app
from simulator.settings import SimulatorSettings

pytestmark = pytest.mark.unit

AUTH = {"authorization": "Bearer sk-test"}
TIERS = {"tiers": {"chat": {"models": {"small": {"rpm": 1, "tpm": 100}}}}}
CHAT = "/v1/chat/completions"
Client = httpx.AsyncClient


class WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make_app(clock: WallClock, **overrides: Any) -> SimulatorApp:
    values: dict[str, Any] = {
        "default_max_tokens": 20,
        "batch_validating_seconds": 10,
        "batch_processing_seconds": 100,
        "batch_finalizing_seconds": 10,
        "batch_cancelling_seconds": 5,
        **overrides,
    }
    return build_app(
        SimulatorSettings(**values), tiers=parse_tiers(TIERS), rng=random.Random(1), wall_clock=clock
    )


def run(app: SimulatorApp, scenario: Callable[[Client], Awaitable[None]]) -> None:
    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test", headers=AUTH) as client:
            await scenario(client)

    asyncio.run(main())


def request_line(custom_id: str, user: str | None = None, model: str = "small") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    if user is not None:
        body["user"] = user
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


async def upload(client: Client, lines: list[dict[str, Any]], name: str = "in.jsonl") -> str:
    content = "".join(json.dumps(item) + "\n" for item in lines).encode()
    answer = await client.post("/v1/files", files={"file": (name, content)}, data={"purpose": "batch"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


async def create(client: Client, file_id: str, **extra: Any) -> dict[str, Any]:
    body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", **extra}
    answer = await client.post("/v1/batches", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def retrieve(client: Client, batch_id: str) -> dict[str, Any]:
    answer = await client.get(f"/v1/batches/{batch_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def lines_of(client: Client, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    answer = await client.get(f"/v1/files/{file_id}/content")
    assert answer.status_code == 200
    return [json.loads(raw) for raw in answer.text.splitlines()]


def test_a_batch_walks_validating_in_progress_finalizing_completed() -> None:
    clock = WallClock()
    app = make_app(clock)

    async def scenario(client: Client) -> None:
        lines = [request_line(f"r{index}") for index in range(4)] + [request_line("bad", "sim:status=500")]
        batch = await create(client, await upload(client, lines), metadata={"run": "nightly"})
        assert batch["status"] == "validating"
        assert batch["id"].startswith("batch_")
        assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
        assert batch["metadata"] == {"run": "nightly"}
        assert batch["expires_at"] == batch["created_at"] + 86400
        clock.now += 10
        batch = await retrieve(client, batch["id"])
        assert batch["status"] == "in_progress"
        assert batch["in_progress_at"] == batch["created_at"] + 10
        assert batch["model"] == "small"
        clock.now += 50  # half of the processing time: half of the five lines are answered
        assert (await retrieve(client, batch["id"]))["request_counts"] == {
            "total": 5,
            "completed": 2,
            "failed": 0,
        }
        clock.now += 50
        batch = await retrieve(client, batch["id"])
        assert batch["status"] == "finalizing"
        assert batch["output_file_id"] is None
        clock.now += 10
        batch = await retrieve(client, batch["id"])
        assert batch["status"] == "completed"
        assert batch["completed_at"] == batch["created_at"] + 120
        assert batch["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
        output = await lines_of(client, batch["output_file_id"])
        assert [item["custom_id"] for item in output] == ["r0", "r1", "r2", "r3"]
        body = output[0]["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["model"] == "small"
        errors = await lines_of(client, batch["error_file_id"])
        assert errors[0]["custom_id"] == "bad"
        assert errors[0]["response"]["status_code"] == 500
        assert errors[0]["response"]["body"]["error"]["type"] == "server_error"
        usage = batch["usage"]
        assert usage["input_tokens"] == 4 * body["usage"]["prompt_tokens"]
        assert usage["output_tokens"] == 4 * body["usage"]["completion_tokens"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        stats = (await client.get("/_stats")).json()
        assert stats["requests_total"] == 0  # batch lines are not live calls and take no live budget
        assert stats["batch_lines"] == 5
        assert stats["batch"]["succeeded"] == 4
        assert stats["batch"]["failed"] == 1
        assert stats["batch"]["usage"]["total_tokens"] == usage["total_tokens"]
        assert stats["batch"]["batches"]["completed"] == 1
        output_file = (await client.get(f"/v1/files/{batch['output_file_id']}")).json()
        assert output_file["purpose"] == "batch_output"
        assert output_file["filename"] == f"batch_{batch['id']}_output.jsonl"

    run(app, scenario)


def test_an_invalid_input_file_fails_the_batch_with_line_errors() -> None:
    clock = WallClock()
    app = make_app(clock)

    async def scenario(client: Client) -> None:
        lines = [request_line("a"), request_line("a"), {**request_line("b"), "url": "/v1/embeddings"}]
        batch = await create(client, await upload(client, lines))
        clock.now += 10
        batch = await retrieve(client, batch["id"])
        assert batch["status"] == "failed"
        assert batch["failed_at"] == batch["created_at"] + 10
        assert batch["errors"]["object"] == "list"
        assert [(error["code"], error["line"]) for error in batch["errors"]["data"]] == [
            ("duplicate_custom_id", 2),
            ("invalid_url", 3),
        ]
        assert batch["output_file_id"] is None
        assert batch["error_file_id"] is None

    run(app, scenario)


def test_cancel_keeps_the_answered_lines_and_cancels_the_rest() -> None:
    clock = WallClock()
    app = make_app(clock)

    async def scenario(client: Client) -> None:
        batch = await create(client, await upload(client, [request_line(f"r{i}") for i in range(4)]))
        clock.now += 10 + 50
        answer = await client.post(f"/v1/batches/{batch['id']}/cancel")
        assert answer.status_code == 200
        assert answer.json()["status"] == "cancelling"
        clock.now += 5
        batch = await retrieve(client, batch["id"])
        assert batch["status"] == "cancelled"
        assert batch["cancelled_at"] == batch["cancelling_at"] + 5
        assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
        assert [item["custom_id"] for item in await lines_of(client, batch["output_file_id"])] == ["r0", "r1"]
        errors = await lines_of(client, batch["error_file_id"])
        assert [(item["custom_id"], item["error"]["code"]) for item in errors] == [
            ("r2", "batch_cancelled"),
            ("r3", "batch_cancelled"),
        ]
        again = await client.post(f"/v1/batches/{batch['id']}/cancel")
        assert again.status_code == 409

    run(app, scenario)


def test_expiry_by_control_and_by_metadata_directive() -> None:
    clock = WallClock()
    app = make_app(clock)

    async def scenario(client: Client) -> None:
        answer = await client.post("/_control", json={"expire_next_batches": 1})
        assert answer.json()["expire_next_batches"] == 1
        file_id = await upload(client, [request_line(f"r{i}") for i in range(4)])
        by_control = await create(client, file_id)
        by_metadata = await create(client, file_id, metadata={"sim": "expire_after=3"})
        plain = await create(client, file_id)
        clock.now += 110
        first = await retrieve(client, by_control["id"])
        assert first["status"] == "expired"
        assert first["expired_at"] == first["created_at"] + 110
        assert first["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
        expired = await lines_of(client, first["error_file_id"])
        assert {item["error"]["code"] for item in expired} == {"batch_expired"}
        second = await retrieve(client, by_metadata["id"])
        assert second["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
        assert (await retrieve(client, plain["id"]))["status"] == "finalizing"

    run(app, scenario)


def test_enqueued_tokens_over_the_limit_fail_the_batch() -> None:
    clock = WallClock()
    app = make_app(clock, batch_enqueued_tokens=60)  # one batch of three lines is 39

    async def scenario(client: Client) -> None:
        file_id = await upload(client, [request_line(f"r{i}") for i in range(3)])
        first = await create(client, file_id)
        clock.now += 10
        assert (await retrieve(client, first["id"]))["status"] == "in_progress"
        second = await create(client, file_id)
        clock.now += 10
        second = await retrieve(client, second["id"])
        assert second["status"] == "failed"
        assert second["errors"]["data"][0]["code"] == "token_limit_exceeded"
        assert "Limit: 60 enqueued tokens" in second["errors"]["data"][0]["message"]
        clock.now += 100  # the first one finished: its tokens are free again
        third = await create(client, file_id)
        clock.now += 10
        assert (await retrieve(client, third["id"]))["status"] == "in_progress"

    run(app, scenario)


def test_files_list_filter_paginate_and_delete() -> None:
    clock = WallClock()
    app = make_app(clock)

    async def scenario(client: Client) -> None:
        ids = []
        for index in range(3):
            ids.append(await upload(client, [request_line("r")], f"f{index}.jsonl"))
            clock.now += 1
        other = await client.post("/v1/files", files={"file": ("x.txt", b"x")}, data={"purpose": "user_data"})
        assert other.status_code == 200
        page = (await client.get("/v1/files", params={"purpose": "batch", "limit": 2})).json()
        assert [item["id"] for item in page["data"]] == [ids[2], ids[1]]
        assert page["has_more"] is True
        assert page["first_id"] == ids[2]
        rest = (await client.get("/v1/files", params={"purpose": "batch", "after": page["last_id"]})).json()
        assert [item["id"] for item in rest["data"]] == [ids[0]]
        assert rest["has_more"] is False
        one = (await client.get(f"/v1/files/{ids[0]}")).json()
        assert one["object"] == "file"
        assert one["status"] == "processed"
        assert one["expires_at"] == one["created_at"] + 30 * 86400
        deleted = await client.delete(f"/v1/files/{ids[0]}")
        assert deleted.json() == {"id": ids[0], "object": "file", "deleted": True}
        assert (await client.get(f"/v1/files/{ids[0]}")).status_code == 404

    run(app, scenario)


def test_bad_requests_are_refused_with_openai_errors() -> None:
    app = make_app(WallClock())

    async def scenario(client: Client) -> None:
        file_id = await upload(client, [request_line("r")])
        body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
        for change, status, param in (
            ({"endpoint": "/v1/moderations"}, 400, "endpoint"),
            ({"completion_window": "1h"}, 400, "completion_window"),
            ({"input_file_id": "file-nope"}, 404, "id"),
            ({"metadata": {"k": 1}}, 400, "metadata"),
        ):
            answer = await client.post("/v1/batches", json={**body, **change})
            assert answer.status_code == status
            assert answer.json()["error"]["param"] == param
        txt = await client.post("/v1/files", files={"file": ("in.txt", b"{}")}, data={"purpose": "batch"})
        assert txt.status_code == 400
        keyless = await client.get("/v1/batches", headers={"authorization": ""})
        assert keyless.status_code == 401
        assert (await client.get("/v1/batches/batch_nope")).status_code == 404

    run(app, scenario)


def test_responses_lines_take_directives_from_metadata_and_times_counts_across_lines() -> None:
    clock = WallClock()
    app = make_app(clock)

    def response_line(custom_id: str, sim: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": "small", "input": "hi", "max_output_tokens": 5}
        if sim is not None:
            body["metadata"] = {"sim": sim}
        return {"custom_id": custom_id, "method": "POST", "url": "/v1/responses", "body": body}

    async def scenario(client: Client) -> None:
        lines = [
            response_line("a", "status=503;times=1"),
            response_line("b", "status=503;times=1"),
            response_line("c", None),
            response_line("d", "status=bogus"),
        ]
        content = "".join(json.dumps(item) + "\n" for item in lines).encode()
        uploaded = await client.post(
            "/v1/files", files={"file": ("r.jsonl", content)}, data={"purpose": "batch"}
        )
        body = {
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/responses",
            "completion_window": "24h",
        }
        batch = (await client.post("/v1/batches", json=body)).json()
        clock.now += 200
        batch = await retrieve(client, batch["id"])
        assert batch["status"] == "completed"
        output = await lines_of(client, batch["output_file_id"])
        assert [item["custom_id"] for item in output] == ["b", "c"]
        assert output[0]["response"]["body"]["object"] == "response"
        errors = await lines_of(client, batch["error_file_id"])
        assert [(item["custom_id"], item["response"]["status_code"]) for item in errors] == [
            ("a", 503),
            ("d", 400),
        ]
        assert errors[1]["response"]["body"]["error"]["param"] == "metadata.sim"

    run(app, scenario)
