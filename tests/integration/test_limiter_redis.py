"""The Redis limiter against a real Redis: the shared behaviour suite, then what only a shared store shows.

Every test uses its own key prefix and deletes its keys afterwards. A Redis that cannot be reached fails
these tests; it never skips them. Limits are checked as bounds (granted <= burst + rate * elapsed), never
as timings.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from domain.tokens.estimates import Cost
from tests.unit.test_limiter_math import BUDGET, Harness, LimiterBehaviour
from workers.buckets import Budget
from workers.limiter import LimiterUnavailable, RedisLimiter

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]

# A worker process: wait until a shared start time, then acquire one request at a time until the run
# ends, sleeping as told; print the wall-clock time of every grant. Or just pause the budget.
WORKER = """
import json, random, sys, time
import redis
from domain.tokens.estimates import Cost
from workers.buckets import Budget
from workers.limiter import RedisLimiter

url, prefix, name, rpm, mode, start_at, seconds = sys.argv[1:8]
limiter = RedisLimiter(redis.Redis.from_url(url), prefix)
budget = Budget(name, rpm=int(rpm))
if mode == "pause":
    limiter.pause(budget, float(seconds))
    print("[]")
    sys.exit(0)
time.sleep(max(0.0, float(start_at) - time.time()))
deadline = float(start_at) + float(seconds)
granted = []
while time.time() < deadline:
    wait = limiter.acquire(budget, Cost())
    if wait == 0:
        granted.append(time.time())
    else:
        time.sleep(wait + random.uniform(0.0, 0.005))
print(json.dumps(granted))
"""


@pytest.fixture
def redis_client() -> Iterator[redis.Redis[Any]]:
    client: redis.Redis[Any] = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis[Any]) -> Iterator[str]:
    value = f"batchery-test-{uuid.uuid4().hex}"
    yield value
    keys = list(redis_client.scan_iter(match=f"{value}:*"))
    if keys:
        redis_client.delete(*keys)


class TestRedisLimiter(LimiterBehaviour):
    @pytest.fixture
    def harness(self, redis_client: redis.Redis[Any], prefix: str) -> Harness:
        return Harness(RedisLimiter(redis_client, prefix), time.sleep, slack=0.25)


def _spawn(
    prefix: str, name: str, *, rpm: int, mode: str, start_at: float, seconds: float
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    args = [REDIS_URL, prefix, name, str(rpm), mode, repr(start_at), repr(seconds)]
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _grants(process: subprocess.Popen[str]) -> list[float]:
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, err
    times: list[float] = json.loads(out)
    return times


def test_worker_processes_share_one_budget(prefix: str) -> None:
    rpm, capacity, rate = 600, 10.0, 10.0
    start_at = time.time() + 1.5
    processes = [
        _spawn(prefix, "procs", rpm=rpm, mode="run", start_at=start_at, seconds=3.0) for _ in range(3)
    ]
    grants = [t for process in processes for t in _grants(process)]
    elapsed = max(grants) - start_at
    assert min(grants) >= start_at
    assert capacity < len(grants) <= capacity + rate * elapsed + 1e-3


def test_pause_set_by_one_process_holds_another(redis_client: redis.Redis[Any], prefix: str) -> None:
    _grants(_spawn(prefix, "paused", rpm=120, mode="pause", start_at=0.0, seconds=5.0))
    limiter = RedisLimiter(redis_client, prefix)
    budget = Budget("paused", rpm=120)
    assert 0.0 < limiter.acquire(budget, Cost()) <= 5.0
    assert 0.0 < limiter.snapshot(budget)["paused_seconds"] <= 5.0


def test_many_threads_at_once_never_exceed_the_limit(redis_client: redis.Redis[Any], prefix: str) -> None:
    limiter = RedisLimiter(redis_client, prefix)
    budget = Budget("threads", rpm=1200)  # 20 a second, capacity 20
    barrier = threading.Barrier(32)
    lock = threading.Lock()
    granted = 0

    def work() -> None:
        nonlocal granted
        barrier.wait()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            wait = limiter.acquire(budget, Cost())
            if wait == 0:
                with lock:
                    granted += 1
            else:
                time.sleep(wait + random.uniform(0.0, 0.005))

    threads = [threading.Thread(target=work) for _ in range(32)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads)
    assert 20 <= granted <= 20 + 20 * elapsed + 1e-3


def test_settle_by_one_client_is_seen_by_another(redis_client: redis.Redis[Any], prefix: str) -> None:
    RedisLimiter(redis_client, prefix).acquire(BUDGET, Cost(tokens=10))
    RedisLimiter(redis_client, prefix).settle(BUDGET, Cost(tokens=10), Cost(tokens=4))
    text_client: redis.Redis[Any] = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        tokens = RedisLimiter(text_client, prefix).snapshot(BUDGET)["tokens"]
    finally:
        text_client.close()
    assert 6.0 <= tokens <= 6.0 + 10.0 * 0.25


def test_script_is_reloaded_after_script_flush(redis_client: redis.Redis[Any], prefix: str) -> None:
    limiter = RedisLimiter(redis_client, prefix)
    assert limiter.acquire(BUDGET, Cost()) == 0.0
    redis_client.script_flush()
    assert limiter.acquire(BUDGET, Cost()) == 0.0
    assert limiter.acquire(BUDGET, Cost()) > 0


def test_idle_bucket_expires_once_it_would_be_full(redis_client: redis.Redis[Any], prefix: str) -> None:
    limiter = RedisLimiter(redis_client, prefix)
    assert limiter.acquire(BUDGET, Cost(tokens=10)) == 0.0
    ttl = redis_client.pttl(f"{prefix}:limiter:{{{BUDGET.name}}}:bucket")
    assert 0 < ttl <= 1000 + 1000


def test_unreachable_redis_raises_limiter_unavailable() -> None:
    client: redis.Redis[Any] = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(LimiterUnavailable):
            RedisLimiter(client, "batchery-test-down").acquire(BUDGET, Cost())
    finally:
        client.close()
