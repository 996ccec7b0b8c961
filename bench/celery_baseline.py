"""What a plain Celery user would write: a task that calls the upstream with httpx, throttled by Celery's
built-in per-worker ``rate_limit`` (the limit divided by the number of workers), retrying 429s and 5xx
with Celery's own retry and the server's Retry-After. Outcomes are counted in Redis.

Run as a worker: ``python -m bench.celery_baseline QUEUE CHAT_RATE EMBEDDING_RATE`` with ``BENCH_REDIS_URL``
and ``BENCH_UPSTREAM`` set.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx
import redis
from celery import Celery

PATHS = {"chat": "/chat/completions", "embedding": "/embeddings"}


def make_app() -> Celery:
    app = Celery("baseline", broker=os.environ["BENCH_REDIS_URL"], set_as_current=True)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    return app


def register(app: Celery, rate_limits: dict[str, str]) -> None:
    client = httpx.Client(timeout=60, trust_env=False)
    counters = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    upstream = os.environ["BENCH_UPSTREAM"]

    def make(kind: str) -> Any:
        @app.task(name=f"baseline.{kind}", bind=True, max_retries=8, rate_limit=rate_limits[kind])
        def call(self: Any, body: dict[str, Any]) -> None:
            try:
                response = client.post(
                    upstream + PATHS[kind], json=body, headers={"authorization": "Bearer x"}
                )
            except httpx.HTTPError as exc:
                counters.hincrby("baseline:counts", "transport_errors", 1)
                raise self.retry(countdown=1, exc=exc) from exc
            counters.hincrby("baseline:counts", f"status_{response.status_code}", 1)
            if response.status_code == 429 or response.status_code >= 500:
                delay = float(response.headers.get("retry-after", "1"))
                if self.request.retries >= self.max_retries:
                    counters.hincrby("baseline:counts", "failed", 1)
                    return
                raise self.retry(countdown=delay)
            if response.status_code >= 400:
                counters.hincrby("baseline:counts", "failed", 1)
                return
            counters.hincrby("baseline:counts", "succeeded", 1)

        return call

    for kind in PATHS:
        make(kind)


def main(argv: list[str]) -> int:
    queue, chat_rate, embedding_rate = argv
    app = make_app()
    register(app, {"chat": chat_rate, "embedding": embedding_rate})
    app.worker_main(
        argv=["worker", "-Q", queue, "-P", "threads", "-c", "16", "--loglevel", "WARNING", "--without-mingle"]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
