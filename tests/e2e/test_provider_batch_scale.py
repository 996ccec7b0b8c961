"""2,000 lines through the provider's Batch API with a worker killed on the way: two workers, beat and
the simulator playing OpenAI's Batch API, in two provider batches of 1,000 lines, the first of which
expires at the provider with half its lines unanswered, and some lines failing with 5xx at the
provider. The killed worker's provider batch is resumed by the other once its lease passes; the
expired batch's unanswered lines and the failed lines run live; every line ends exactly once, and the
simulator ran each line at most once in a batch (no second provider batch for the same lines)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from testbed.processes import Process, batchery
from tests.factories import chat_request
from tests.support.batches import jsonl, request_line
from tests.support.keys import create_key
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

LINES = 2000


@pytest.mark.timeout(300)
def test_two_thousand_lines_survive_a_worker_kill_and_end_once(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "BATCHERY_PROVIDER_BATCH_FLUSH_AGE_SECONDS": "0.5",
        "BATCHERY_PROVIDER_BATCH_POLL_SECONDS": "0.5",
        "BATCHERY_PROVIDER_BATCH_POLL_MAX_SECONDS": "1",
        "BATCHERY_SWEEP_INTERVAL_SECONDS": "1",
        "BATCHERY_LEASE_SECONDS": "6",
        "BATCHERY_HEARTBEAT_SECONDS": "2",
        "BATCHERY_PROVIDER_BATCH_MAX_LINES": str(LINES // 2),
    }
    sim_args = ("--no-limits", "--batch-processing-seconds", "6", "--batch-error-rate", "0.02")
    with running_stack(
        tmp_path, postgres_url, redis_url, workers=2, extra_env=env, sim_args=sim_args
    ) as stack:
        beat = Process(
            "beat", batchery("beat", "--schedule", str(tmp_path / "beat-schedule")), stack.env, tmp_path
        )
        stack.processes["beat"] = beat
        try:
            tenant = f"pbscale-{uuid.uuid4().hex[:8]}"
            key = create_key(postgres_url, tenant)
            client = OpenAI(base_url=stack.api_url + "/v1", api_key=key, max_retries=0)
            with stack.sim() as sim:  # the first provider batch expires with half its lines answered
                assert sim.post("/_control", json={"expire_next_batches": 1}).status_code == 200
            lines = [request_line(f"l{i}", chat_request(prompt=f"line {i}")) for i in range(LINES)]
            uploaded = client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                extra_body={"execution": "auto"},
            )
            with stack.sim() as sim:
                deadline = time.monotonic() + 60
                while sim.get("/_stats").json()["batch"]["batches"].get("in_progress", 0) < 1:
                    assert time.monotonic() < deadline, stack.processes["worker0"].log_tail(30)
                    time.sleep(0.2)
                stack.processes["worker0"].signal(signal.SIGKILL)  # whichever held it, one is gone
                deadline = time.monotonic() + 240
                while (done := client.batches.retrieve(batch.id)).status not in {
                    "completed",
                    "failed",
                    "expired",
                }:
                    if time.monotonic() > deadline:
                        logs = "\n".join(f"--- {n}\n{p.log_tail(20)}" for n, p in stack.processes.items())
                        raise TimeoutError(f"batch still {done.status}\n{logs}")
                    time.sleep(0.5)
                stats = sim.get("/_stats").json()
            assert done.status == "completed", done
            assert done.request_counts is not None
            assert (done.request_counts.completed, done.request_counts.failed) == (LINES, 0)
            assert done.output_file_id is not None
            outputs = [
                json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()
            ]
            counted = Counter(line["custom_id"] for line in outputs)
            assert len(counted) == LINES and set(counted.values()) == {1}
            assert {line["response"]["status_code"] for line in outputs} == {200}
            assert stats["batch"]["batches"].get("expired") == 1, stats["batch"]
            assert stats["batch"]["not_run"] == LINES // 4  # half of the expired batch's 1,000 lines
            assert stats["batch_lines"] == LINES - LINES // 4  # no line sent to the provider twice
            failed_in_batch = stats["batch"]["failed"]
            assert 0 < failed_in_batch < LINES // 10
            usage = httpx.get(
                stack.api_url + "/v1/usage",
                params={"tenant": tenant},
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
            ).json()["total"]
            # each line the provider failed or never ran ran live once, the others at the batch price
            assert usage["requests"] == LINES
            assert (
                usage["batch_requests"]
                == stats["batch"]["succeeded"]
                == stats["batch_lines"] - failed_in_batch
            )
            client.close()
        finally:
            beat.stop()
