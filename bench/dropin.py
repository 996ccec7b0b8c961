"""The drop-in OpenAI endpoints: what a call through batchery adds to a direct call, and how many waiting
calls one API process holds.

Usage: ``python -m bench.dropin [--rate 50] [--requests 1000] [--latency 50] [--waiting 2000]``

0. Where the time goes: sequential calls through batchery, split by the job's stored times.
1. Added latency. The same open-loop load (``bench.openloop``: latency from each request's due time,
   so queueing is charged) of ``POST /v1/chat/completions`` goes straight to the simulator (the
   baseline), then through batchery (API, one worker, the simulator behind it), at ``--rate`` requests
   a second with the simulator answering in ``--latency`` ms. Added = batchery's percentile minus the
   direct one.
2. Waiting calls. With no worker running, ``--waiting`` calls are opened and left waiting in one API
   process (uvicorn, one event loop); its RSS is read idle (warm, after part 1) and with every call
   waiting. Then a worker
   starts, and every call must end ``200``: woken by the completion notices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC
from typing import Any

import httpx
import psycopg

from bench import procstat
from bench.harness import ROOT, batchery_env, save, services, start_api, start_simulator
from bench.openloop import LoadResult, open_loop
from config.tiers import DEFAULT_TIERS_FILE
from testbed.processes import batchery


def call_bytes(port: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
    head += "authorization: Bearer sk-bench\r\ncontent-type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head += f"content-length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


def chat(index: int) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say hello {index}"}]}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def summary(result: LoadResult) -> dict[str, Any]:
    return {
        "p50_ms": round(result.percentile(0.50) * 1000, 2),
        "p99_ms": round(result.percentile(0.99) * 1000, 2),
        "statuses": result.statuses,
        "seconds": round(result.seconds, 2),
    }


async def _one(port: int, payload: bytes, retries: int = 20) -> int:
    """The status of one call; 0 when the connection failed. A 503 (the process is at capacity while
    the calls are being opened) is tried again after its ``Retry-After``, as clients should."""
    for _ in range(retries + 1):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return 0
        try:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
        except (OSError, asyncio.IncompleteReadError):
            return 0
        finally:
            writer.close()
        if status != 503:
            return status
        await asyncio.sleep(1.0)
    return 503


async def _hold(port: int, count: int, on_all_open: Any) -> dict[int, int]:
    headers = {"x-batchery-timeout": "600"}
    tasks = []
    for start in range(0, count, 100):  # opened in steps, within the listen backlog
        for index in range(start, min(count, start + 100)):
            tasks.append(asyncio.create_task(_one(port, call_bytes(port, chat(index), headers))))
        await asyncio.sleep(0.05)
    await asyncio.to_thread(on_all_open)
    statuses: dict[int, int] = {}
    for status in await asyncio.gather(*tasks):
        statuses[status] = statuses.get(status, 0) + 1
    return statuses


def breakdown(api_url: str, database_url: str, calls: int = 60) -> dict[str, float]:
    """Sequential calls through batchery, each split by the job's stored times (medians, ms): before
    the job is stored, queued until a worker claims it, the worker's run (the upstream call inside it),
    and from the stored outcome to the answer received (the notice, the wake-up, the read)."""
    spans: dict[str, list[float]] = {"submit": [], "queued": [], "run": [], "answer": [], "total": []}
    with httpx.Client(base_url=api_url, timeout=60) as client:
        times: dict[str, tuple[float, float]] = {}
        for index in range(calls):
            began = time.time()
            answer = client.post("/v1/chat/completions", json=chat(index))
            times[answer.headers["x-batchery-job-id"]] = (began, time.time())
    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:
        rows = connection.execute(
            "select id, created_at, started_at, finished_at from jobs where id = any(%s)", (list(times),)
        ).fetchall()
    for job_id, created, started, finished in rows:
        began, ended = times[job_id]
        stamps = [
            (m if m.tzinfo else m.replace(tzinfo=UTC)).timestamp() for m in (created, started, finished)
        ]
        spans["submit"].append(stamps[0] - began)
        spans["queued"].append(stamps[1] - stamps[0])
        spans["run"].append(stamps[2] - stamps[1])
        spans["answer"].append(ended - stamps[2])
        spans["total"].append(ended - began)
    return {name: round(statistics.median(values) * 1000, 2) for name, values in spans.items()}


def queued_jobs(database_url: str) -> int:
    with psycopg.connect(database_url.replace("+psycopg", "")) as connection:
        row = connection.execute("select count(*) from jobs where status = 'queued'").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=50, help="the simulator's latency, ms")
    parser.add_argument("--waiting", type=int, default=2000)
    args = parser.parse_args()
    record: dict[str, Any] = {"rate": args.rate, "requests": args.requests, "latency_ms": args.latency}
    with services(ROOT / "bench" / "logs" / "dropin") as running:
        sim_url = start_simulator(running, "--no-limits", "--latency", f"fixed:{args.latency}")
        # gpt-4o-mini's default limits (5,000 RPM; 4M TPM, about 66 calls a second at the estimate of
        # a call with no max_tokens) would pace a faster load: measured here is batchery's own
        # latency, so the bench's tiers file lifts both limits far above the offered rate
        tiers = running.log_dir / "tiers.toml"
        header = '[tiers.standard.models."gpt-4o-mini"]\nrpm = 5000\ntpm = 4000000\n'
        text = DEFAULT_TIERS_FILE.read_text()
        assert header in text, "the default tiers file changed: update the bench"
        lifted = header.replace("5000", "600000").replace("4000000", "4000000000")
        tiers.write_text(text.replace(header, lifted))
        env = batchery_env(running, sim_url, BATCHERY_LOG_LEVEL="WARNING", BATCHERY_TIERS_FILE=str(tiers))
        api_url = start_api(running, env)
        api = next(process for process in running.processes if process.name == "api")

        # 1. added latency: direct, then through batchery
        worker = running.start("worker", batchery("worker", "--concurrency", "64"), env)
        open_loop(port_of(api_url), [call_bytes(port_of(api_url), chat(i)) for i in range(50)], 10)  # warm-up
        record["sequential_ms"] = breakdown(api_url, running.database_url)
        print(f"sequential, medians: {json.dumps(record['sequential_ms'])}")
        direct = open_loop(
            port_of(sim_url), [call_bytes(port_of(sim_url), chat(i)) for i in range(args.requests)], args.rate
        )
        through = open_loop(
            port_of(api_url), [call_bytes(port_of(api_url), chat(i)) for i in range(args.requests)], args.rate
        )
        record["direct"], record["batchery"] = summary(direct), summary(through)
        record["added_ms"] = {
            "p50": round((through.percentile(0.5) - direct.percentile(0.5)) * 1000, 2),
            "p99": round((through.percentile(0.99) - direct.percentile(0.99)) * 1000, 2),
        }
        record["ratio"] = {
            "p50": round(through.percentile(0.5) / direct.percentile(0.5), 2),
            "p99": round(through.percentile(0.99) / direct.percentile(0.99), 2),
        }
        print(f"direct: {json.dumps(record['direct'])}")
        print(f"batchery: {json.dumps(record['batchery'])}")
        print(f"added: {json.dumps(record['added_ms'])} ratio: {json.dumps(record['ratio'])}")
        worker.stop()  # the queue is empty: part 2 holds its calls with no worker

        # 2. waiting calls, on the warm API, with no worker until every call waits
        idle_rss = procstat.rss_bytes(api.popen.pid)
        peak: dict[str, Any] = {}

        def all_waiting() -> None:
            held, before = queued_jobs(running.database_url), -1
            while held != before or held == 0:  # until every call that got through is stored and waits
                time.sleep(3.0)
                held, before = queued_jobs(running.database_url), held
            peak["held"] = held
            peak["rss"] = procstat.rss_bytes(api.popen.pid)
            peak["threads"] = procstat.threads(api.popen.pid)
            running.start("worker2", batchery("worker", "--concurrency", "64"), env)
            peak["started"] = time.perf_counter()

        statuses = asyncio.run(_hold(port_of(api_url), args.waiting, all_waiting))
        drained = time.perf_counter() - peak["started"]
        per_call = (peak["rss"] - idle_rss) / args.waiting
        record["waiting"] = {
            "calls": args.waiting,
            "held": peak["held"],
            "statuses": statuses,
            "api_rss_idle_mb": round(idle_rss / 2**20, 1),
            "api_rss_waiting_mb": round(peak["rss"] / 2**20, 1),
            "api_threads_waiting": peak["threads"],
            "kib_per_waiting_call": round(per_call / 1024, 1),
            "seconds_to_answer_all_after_worker_start": round(drained, 1),
        }
        print(f"waiting calls: {json.dumps(record['waiting'])}")

    print(f"saved {save('dropin', record)}")


if __name__ == "__main__":
    main()
