"""A backlog of 1,000,000 queued jobs: what it costs in Redis and in PostgreSQL, and that memory stays
bounded while it exists.

Jobs are inserted straight into PostgreSQL (one ``INSERT … SELECT generate_series`` per step, the
fastest path; the rows are those the API writes: the same request body, ten tenants), with a
``batchery dispatcher`` running and no worker, so each tier's queue holds its window of ids and the
rest waits in the database. Measured at 100,000 and at 1,000,000 queued jobs: Redis ``used_memory`` and
the tier queue's length, the ``jobs`` table's size with its indexes, the dispatcher's and the API's
resident memory, and ``POST /v1/jobs`` latency (a new job still answers while the backlog exists).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import procstat
from bench.bench_stack import CHAT_BODY, MODEL, bench_stack, tiers_toml
from bench.isolated import PrivatePostgres, used_memory, wait_until
from testbed.processes import batchery
from testbed.redis_server import RedisServer

TENANTS = 10
INSERT = """
INSERT INTO jobs (id, tenant_id, kind, model, tier, status, priority, request, prompt_tokens,
    completion_tokens, total_tokens, cached_tokens, reasoning_tokens, images, estimated_tokens,
    limiter_wait_ms, attempts, created_at, updated_at)
SELECT 'job_backlog' || lpad(g::text, 19, '0'), 'tenant' || (g %% %(tenants)s), 'chat', %(model)s, 'bench',
    'queued', 0, %(request)s::jsonb, 0, 0, 0, 0, 0, 0, 20, 0, 0, now(), now()
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""


def _insert(url: str, first: int, last: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        params = {"tenants": TENANTS, "model": MODEL, "request": json.dumps(CHAT_BODY)}
        conn.execute(INSERT, {**params, "first": first, "last": last})
        conn.execute("ANALYZE jobs")
    return time.perf_counter() - started


def _post_latency(api_url: str, count: int = 50) -> float:
    times = []
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            client.post("/v1/jobs", json={"kind": "chat", "request": CHAT_BODY}).raise_for_status()
            times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


def run_backlog(
    pg: PrivatePostgres, redis_server: RedisServer, log_dir: Path, *, total: int = 1_000_000
) -> dict[str, Any]:
    with bench_stack(pg, redis_server, log_dir) as stack:
        tiers = log_dir / "tiers.toml"
        tiers.write_text(tiers_toml(32))
        stack.sim_url = "http://127.0.0.1:9"  # nothing calls an upstream
        stack.configure(tiers, BATCHERY_DISPATCH_INTERVAL_SECONDS="0.5")
        api_url = stack.start_api()
        dispatcher = stack.start("dispatcher", batchery("dispatcher"))
        redis = stack.redis()
        time.sleep(2.0)
        empty = {
            "redis_used_memory": used_memory(redis),
            "jobs_table_bytes": pg.database_bytes(stack.database, "jobs"),
        }
        steps: dict[str, Any] = {}
        done = 0
        for target in (total // 10, total):
            seconds = _insert(stack.database_url, done + 1, target)
            done = target
            wait_until(lambda: redis.llen("tier.bench") >= 64, 30, 0.2)
            time.sleep(2.0)  # a few dispatcher rounds over the grown backlog
            steps[str(target)] = {
                "insert_seconds": round(seconds, 1),
                "queued_jobs": stack.count("status = 'queued'"),
                "tier_queue_length": int(redis.llen("tier.bench")),
                "redis_used_memory": used_memory(redis),
                "jobs_table_bytes": pg.database_bytes(stack.database, "jobs"),
                "dispatcher_rss_mb": round(procstat.rss_bytes(dispatcher.popen.pid) / 2**20, 1),
                "api_rss_mb": round(procstat.rss_bytes(stack.processes["api"].popen.pid) / 2**20, 1),
                "post_jobs_p50_ms": _post_latency(api_url),
            }
        last = steps[str(total)]
        return {
            "backlog": total,
            "empty": empty,
            "steps": steps,
            "redis_bytes_per_queued_job": round(
                (last["redis_used_memory"] - empty["redis_used_memory"]) / total, 3
            ),
            "db_bytes_per_queued_job": round((last["jobs_table_bytes"] - empty["jobs_table_bytes"]) / total),
            "request_json_bytes": len(json.dumps(CHAT_BODY)),
        }
