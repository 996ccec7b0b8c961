"""The official ``openai`` SDK drives batchery's Batch API through real processes (API, Celery workers
with their dispatchers, the simulator): upload, create, poll, download; an invalid file; pagination;
cancel with partial results; and the signed ``batch.completed`` webhook."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from openai.types import Batch
from standardwebhooks import Webhook

from testbed.processes import batchery
from tests.factories import chat_request, embedding_request, response_request, vision_request
from tests.support.batches import jsonl, request_line
from tests.support.keys import create_key
from tests.support.openai_schema import assert_conforms, assert_output_line, without_nulls
from tests.support.stack import Stack, running_stack
from tests.support.webhook_receiver import Script, receiver

pytestmark = pytest.mark.e2e

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass
class Setup:
    stack: Stack
    client: OpenAI
    api_key: str
    """A key of this module's own tenant, so its batches and jobs stay out of other modules' lists."""
    hooks_url: str
    hooks: Script


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str) -> Iterator[Setup]:
    tmp: Path = tmp_path_factory.mktemp("batches")
    env = {"BATCHERY_WEBHOOK_SECRETS": SECRET, "BATCHERY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"}
    with (
        receiver() as (hooks_url, hooks),
        running_stack(tmp, postgres_url, redis_url, extra_env=env) as stack,
    ):
        key = create_key(postgres_url, f"batches-{uuid.uuid4().hex[:8]}")
        client = OpenAI(base_url=stack.api_url + "/v1", api_key=key, max_retries=0)
        yield Setup(stack, client, key, hooks_url, hooks)
        client.close()


def _submit(client: OpenAI, lines: list[str], endpoint: str = "/v1/chat/completions", **extra: Any) -> Batch:
    uploaded = client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.status == "processed"
    return client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **extra,
    )


def _wait(
    setup: Setup, batch_id: str, until: set[str] = TERMINAL, timeout: float = 60.0
) -> tuple[Batch, list[str]]:
    """Poll with ``batches.retrieve`` until the status is in ``until``; returns it and every status seen."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        batch = setup.client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in until:
            return batch, seen
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n}\n{p.log_tail(20)}" for n, p in setup.stack.processes.items())
            raise TimeoutError(f"batch {batch_id} still {batch.status} ({seen})\n{logs}")
        time.sleep(0.2)


def _content(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_chat_batch_completes_with_every_custom_id_once_and_the_upstreams_body(setup: Setup) -> None:
    lines = [request_line(f"q{i}", chat_request(prompt=f"question {i}")) for i in range(11)]
    lines.append(request_line("look", vision_request()))
    batch = _submit(
        setup.client,
        lines,
        metadata={"suite": "e2e"},
        extra_body={"webhook_url": setup.hooks_url + "/batches"},
    )
    assert batch.status == "validating" and batch.metadata == {"suite": "e2e"}
    done, seen = _wait(setup, batch.id)
    assert done.status == "completed", (done, seen)
    order = ["validating", "in_progress", "finalizing", "completed"]
    assert set(seen) <= set(order) and seen == sorted(seen, key=order.index)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.in_progress_at <= done.finalizing_at <= done.completed_at
    assert done.request_counts is not None and done.request_counts.model_dump() == {
        "total": 12,
        "completed": 12,
        "failed": 0,
    }
    assert done.error_file_id is None and done.model is None  # two models: gpt-4o-mini and gpt-4o
    assert_conforms("Batch", without_nulls(done.model_dump(mode="json", exclude_unset=True)))
    outputs = _content(setup.client, done.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == sorted([f"q{i}" for i in range(11)] + ["look"])
    for line in outputs:
        assert_output_line(line)
        assert line["response"]["status_code"] == 200
        assert_conforms("CreateChatCompletionResponse", line["response"]["body"])
    usage = done.usage
    assert usage is not None
    assert (
        usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in outputs) > 0
    )
    assert usage.total_tokens == sum(line["response"]["body"]["usage"]["total_tokens"] for line in outputs)
    output_file = setup.client.files.retrieve(done.output_file_id or "")
    assert output_file.purpose == "batch_output" and output_file.bytes == len(
        setup.client.files.content(output_file.id).content
    )

    deadline = time.monotonic() + 30
    while (
        not [item for item in setup.hooks.received if item.path == "/batches"] and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    (hook,) = [item for item in setup.hooks.received if item.path == "/batches"]
    event = Webhook(SECRET).verify(hook.body, hook.headers)
    assert event["type"] == "batch.completed" and event["data"]["id"] == batch.id
    assert event["data"]["status"] == "completed" and event["data"]["output_file_id"] == done.output_file_id


def test_embeddings_and_responses_batches_reach_their_endpoints(setup: Setup) -> None:
    embeddings = _submit(
        setup.client,
        [request_line(f"e{i}", embedding_request(), "/v1/embeddings") for i in range(3)],
        "/v1/embeddings",
    )
    responses = _submit(
        setup.client,
        [request_line(f"r{i}", response_request(), "/v1/responses") for i in range(3)],
        "/v1/responses",
    )
    for batch, kind in ((embeddings, "list"), (responses, "response")):
        done, _ = _wait(setup, batch.id)
        assert done.status == "completed", done
        outputs = _content(setup.client, done.output_file_id)
        assert len(outputs) == 3 and {line["response"]["body"]["object"] for line in outputs} == {kind}
    assert_conforms(
        "CreateEmbeddingResponse",
        _content(setup.client, _wait(setup, embeddings.id)[0].output_file_id)[0]["response"]["body"],
    )


def test_a_file_with_invalid_lines_fails_like_openais(setup: Setup) -> None:
    lines = [
        request_line("a"),
        "this is not json",
        request_line("a"),
        request_line("b", url="/v1/embeddings"),
    ]
    batch = _submit(setup.client, lines)
    failed, _ = _wait(setup, batch.id)
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors is not None and failed.errors.data is not None
    assert [(error.code, error.line) for error in failed.errors.data] == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("url_mismatch", 4),
    ]
    assert failed.output_file_id is None and failed.request_counts is not None
    assert failed.request_counts.total == 0


def test_the_sdk_pages_through_batches_list(setup: Setup) -> None:
    created = [_submit(setup.client, [request_line("one")]).id for _ in range(3)]
    first = setup.client.batches.list(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    listed = [batch.id for batch in setup.client.batches.list(limit=2)]  # auto-pages with ``after``
    assert len(listed) == len(set(listed))
    assert listed[:3] == created[::-1]
    for batch_id in created:
        _wait(setup, batch_id)


def test_cancel_yields_the_results_finished_so_far(setup: Setup) -> None:
    fast = [request_line(f"fast{i}") for i in range(2)]
    slow = [request_line(f"slow{i}", chat_request(user="sim:latency=3000")) for i in range(24)]
    batch = _submit(setup.client, fast + slow)
    deadline = time.monotonic() + 30
    while True:
        counts = setup.client.batches.retrieve(batch.id).request_counts
        if counts is not None and counts.completed >= 2:
            break
        assert time.monotonic() < deadline, "the fast requests did not finish"
        time.sleep(0.1)
    cancelling = setup.client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    cancelled, _ = _wait(setup, batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    outputs = _content(setup.client, cancelled.output_file_id)
    errors = _content(setup.client, cancelled.error_file_id)
    done = {line["custom_id"] for line in outputs}
    assert {"fast0", "fast1"} <= done and len(errors) > 0
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    every = [line["custom_id"] for line in outputs + errors]
    assert sorted(every) == sorted([f"fast{i}" for i in range(2)] + [f"slow{i}" for i in range(24)])
    assert cancelled.request_counts is not None
    assert (cancelled.request_counts.completed, cancelled.request_counts.failed) == (
        len(outputs),
        len(errors),
    )


def _cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    common = ["--url", setup.stack.api_url, "--api-key", setup.api_key]
    argv = batchery("batch", *args, *common)
    return subprocess.run(argv, env=setup.stack.env, capture_output=True, text=True, timeout=90, check=False)


def test_the_cli_runs_a_file_with_progress_and_writes_every_result(setup: Setup, tmp_path: Path) -> None:
    source, results = tmp_path / "in.jsonl", tmp_path / "results.jsonl"
    lines = [request_line(f"c{i}") for i in range(5)]
    lines.append(request_line("bad", chat_request(user="sim:status=400")))
    source.write_bytes(jsonl(lines))
    run = _cli(setup, "run", str(source), "--endpoint", "/v1/chat/completions", "--wait", "-o", str(results))
    assert run.returncode == 0, run.stderr
    batch_id = run.stdout.strip()
    assert "6/6" in run.stderr and "1 failed" in run.stderr and "completed" in run.stderr
    written = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in written) == ["bad", "c0", "c1", "c2", "c3", "c4"]
    (bad,) = [line for line in written if line["custom_id"] == "bad"]
    assert bad["response"]["status_code"] == 400 and bad["response"]["body"]["error"]["message"]
    listed = _cli(setup, "list", "--limit", "5")
    assert listed.returncode == 0 and batch_id in listed.stdout
    downloaded = _cli(setup, "download", batch_id)
    assert downloaded.returncode == 0
    assert sorted(downloaded.stdout.splitlines()) == sorted(results.read_text().splitlines())
    status = _cli(setup, "status", batch_id)
    assert json.loads(status.stdout)["status"] == "completed"
