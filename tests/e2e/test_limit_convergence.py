"""The account's real limit is 20% below tiers.toml: batchery learns it from the upstream's headers,
paces at it, keeps 429s rare and loses no job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.factories import chat_request
from tests.support.stack import running_stack

pytestmark = pytest.mark.e2e

TIERS = """
burst_seconds = 1.0

[tiers.standard]
concurrency = 16
timeout_seconds = 30
max_attempts = 8

[tiers.standard.models."gpt-4o-mini"]
rpm = 1200
tpm = 10000000
"""
JOBS = 300


def test_batchery_converges_to_a_lower_real_limit(tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(TIERS)
    sim_args = (
        "--tiers",
        str(tiers),
        "--limit-scale",
        "0.8",
        "--quantization",
        "bucket",
        "--latency",
        "fixed:50",
    )
    with (
        running_stack(
            tmp_path,
            postgres_url,
            redis_url,
            sim_args=sim_args,
            worker_args=("--concurrency", "16"),
            extra_env={"BATCHERY_TIERS_FILE": str(tiers)},
        ) as stack,
        stack.api() as api,
        stack.sim() as sim,
    ):
        sim.post("/_stats/reset")
        started = time.monotonic()
        ids = [
            api.post("/v1/jobs", json={"kind": "chat", "request": chat_request(prompt=f"job {i}")}).json()[
                "id"
            ]
            for i in range(JOBS)
        ]
        jobs = stack.wait_jobs(api, ids, timeout=120)
        elapsed = time.monotonic() - started
        stats = sim.get("/_stats").json()
    assert all(job["status"] == "succeeded" for job in jobs)
    calls = stats["requests_total"]
    limited = stats["rate_limited"]
    assert limited / calls <= 0.03, stats  # pacing at 1200 RPM against 960 would refuse about 20%
    achieved_rpm = JOBS / elapsed * 60
    print(f"calls={calls} rate_limited={limited} achieved_rpm={achieved_rpm:.0f} of 960")
    assert achieved_rpm <= 960 * 1.1, achieved_rpm
