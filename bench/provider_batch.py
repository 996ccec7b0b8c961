"""The same batch run ``live`` and then ``auto`` (through the provider's Batch API): cost from stored
usage and the price table, and time to completion, against the simulator playing OpenAI's Batch API.

Usage: ``python -m bench.provider_batch [--lines 500] [--batch-seconds 2]``

One worker and beat serve a batch of ``--lines`` chat lines twice: with ``execution: live`` (every line
a live call), then with ``execution: auto`` (every line in one provider batch, which the simulator runs
in ``--batch-seconds`` plus its validating and finalizing phases). Cost is what ``GET /v1/usage``
reports for each run (the difference of its totals before and after), so it is priced from the usage
the jobs stored, at the live price or the batch price (``prices.toml``: half). Printed: each mode's
cost, requests and seconds to completion, and the auto/live cost ratio (expected about 0.5).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx

from bench.harness import ROOT, batchery_env, save, services, start_api, start_simulator
from testbed.processes import batchery


def lines(count: int) -> bytes:
    rows = []
    for index in range(count):
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Summarise item {index} of the catalogue"}],
            "max_tokens": 64,
        }
        rows.append(
            json.dumps(
                {"custom_id": f"r{index}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            )
        )
    return ("\n".join(rows) + "\n").encode()


def usage_total(api: httpx.Client) -> dict[str, Any]:
    return dict(api.get("/v1/usage", params={"group_by": "model"}).json()["total"])


def run(api: httpx.Client, count: int, execution: str) -> dict[str, Any]:
    before = usage_total(api)
    uploaded = api.post("/v1/files", files={"file": ("in.jsonl", lines(count))}, data={"purpose": "batch"})
    uploaded.raise_for_status()
    began = time.perf_counter()
    body = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "execution": execution,
    }
    batch = api.post("/v1/batches", json=body).json()
    while (batch := api.get(f"/v1/batches/{batch['id']}").json())["status"] not in (
        "completed",
        "failed",
        "expired",
        "cancelled",
    ):
        time.sleep(0.2)
    seconds = time.perf_counter() - began
    after = usage_total(api)
    return {
        "status": batch["status"],
        "completed": batch["request_counts"]["completed"],
        "seconds": round(seconds, 2),
        "cost_usd": round(after["cost_usd"] - before["cost_usd"], 9),
        "batch_requests": after["batch_requests"] - before["batch_requests"],
        "savings_usd": round(after["savings_usd"] - before["savings_usd"], 9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--batch-seconds", type=float, default=2.0, help="the simulator's in_progress time")
    args = parser.parse_args()
    record: dict[str, Any] = vars(args).copy()
    with services(ROOT / "bench" / "logs" / "provider_batch") as running:
        sim_url = start_simulator(
            running, "--no-limits", "--batch-processing-seconds", str(args.batch_seconds)
        )
        env = batchery_env(
            running,
            sim_url,
            BATCHERY_LOG_LEVEL="WARNING",
            BATCHERY_PROVIDER_BATCH_FLUSH_AGE_SECONDS="1",
            BATCHERY_PROVIDER_BATCH_POLL_SECONDS="0.5",
            BATCHERY_PROVIDER_BATCH_POLL_MAX_SECONDS="1",
        )
        api_url = start_api(running, env)
        running.start("worker", batchery("worker", "--concurrency", "32"), env)
        schedule = ROOT / "bench" / "logs" / "provider_batch" / "beat-schedule"
        running.start("beat", batchery("beat", "--schedule", str(schedule)), env)
        with httpx.Client(base_url=api_url, timeout=60) as api:
            record["live"] = run(api, args.lines, "live")
            record["auto"] = run(api, args.lines, "auto")
        live_cost = record["live"]["cost_usd"]
        record["cost_ratio_auto_to_live"] = (
            round(record["auto"]["cost_usd"] / live_cost, 3) if live_cost else None
        )
        for name in ("live", "auto", "cost_ratio_auto_to_live"):
            print(f"{name}: {json.dumps(record[name])}")
    print(f"saved {save('provider_batch', record)}")


if __name__ == "__main__":
    main()
