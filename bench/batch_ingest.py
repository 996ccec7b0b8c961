"""Batch ingestion: a 50,000-line chat JSONL file of about 20 MB is uploaded and its batch created,
until every request is a queued job. Reports the time of each step and the peak memory of the API
(and of the worker that validates and fans out the file).

    python -m bench.batch_ingest [--lines 50000] [--prompt-chars 330]

It runs real processes on a fresh PostgreSQL database and a private Redis database: the API and one
worker serving only the ``images`` tier, so its dispatcher leaves the chat jobs in the backlog and
nothing calls an upstream. The goal is 30 s or less and an API peak RSS of 300 MB or less.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.harness import ROOT, batchery_env, save, services, start_api
from testbed.processes import batchery, wait_for

GOAL_SECONDS = 30.0
GOAL_API_RSS_MB = 300.0


def write_input(path: Path, lines: int, prompt_chars: int) -> int:
    """A chat batch file of ``lines`` requests; returns its size in bytes."""
    with path.open("w", encoding="utf-8") as handle:
        for index in range(lines):
            prompt = (
                f"Request {index}: summarise this. "
                + ("lorem ipsum " * (prompt_chars // 12 + 1))[:prompt_chars]
            )
            body = {
                "model": "gpt-4o-mini",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
                "max_tokens": 64,
            }
            line = {
                "custom_id": f"req-{index}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            handle.write(json.dumps(line) + "\n")
    return path.stat().st_size


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(lines: int, prompt_chars: int) -> dict[str, Any]:
    log_dir = ROOT / "var" / "bench-batch-ingest"
    with services(log_dir) as running:
        env = batchery_env(running, "http://127.0.0.1:9")  # no upstream is ever called
        api_url = start_api(running, env)
        worker = running.start(
            "worker", batchery("worker", "--tier", "images", "--concurrency", "2", "--name", "ingest@%h"), env
        )
        api = next(process for process in running.processes if process.name == "api")
        input_path = log_dir / "input.jsonl"
        size = write_input(input_path, lines, prompt_chars)
        idle_api_mb = peak_rss_mb(api.popen.pid)
        with httpx.Client(base_url=api_url, timeout=300.0) as client:
            wait_for(lambda: worker.alive() and "ready" in worker.log_tail(200), 60, what="worker ready")
            started = time.perf_counter()
            with input_path.open("rb") as handle:
                uploaded = client.post(
                    "/v1/files", files={"file": ("input.jsonl", handle)}, data={"purpose": "batch"}
                )
            uploaded.raise_for_status()
            upload_done = time.perf_counter()
            batch = client.post(
                "/v1/batches",
                json={
                    "input_file_id": uploaded.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            ).json()
            while batch["status"] == "validating":
                time.sleep(0.05)
                batch = client.get(f"/v1/batches/{batch['id']}").json()
            queued_done = time.perf_counter()
        engine = create_engine(running.database_url)
        with engine.connect() as connection:
            queued = connection.execute(
                text("SELECT count(*) FROM jobs WHERE batch_id = :id AND status = 'queued'"),
                {"id": batch["id"]},
            ).scalar_one()
        engine.dispose()
        record = {
            "lines": lines,
            "file_bytes": size,
            "batch_status": batch["status"],
            "jobs_queued": int(queued),
            "upload_seconds": round(upload_done - started, 2),
            "validate_and_fan_out_seconds": round(queued_done - upload_done, 2),
            "total_seconds": round(queued_done - started, 2),
            "api_peak_rss_mb": round(peak_rss_mb(api.popen.pid), 1),
            "api_idle_rss_mb": round(idle_api_mb, 1),
            "worker_peak_rss_mb": round(peak_rss_mb(worker.popen.pid), 1),
        }
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--prompt-chars", type=int, default=150, help="about 20 MB at 50,000 lines")
    args = parser.parse_args(argv)
    record = run(args.lines, args.prompt_chars)
    ok = (
        record["batch_status"] == "in_progress"
        and record["jobs_queued"] == args.lines
        and record["total_seconds"] <= GOAL_SECONDS
        and record["api_peak_rss_mb"] <= GOAL_API_RSS_MB
    )
    record["meets_goal"] = ok
    print(json.dumps(record, indent=2))
    print(f"saved to {save('batch_ingest', record)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
