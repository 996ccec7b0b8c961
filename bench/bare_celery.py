"""The baseline of the throughput benchmark: a bare Celery task that makes the same HTTP call as a
batchery job (one chat completion, to the same simulator) and stores nothing.

It is what one writes with Celery alone: Celery's defaults, JSON, results ignored, one pooled httpx
client per process. Run as a worker::

    BENCH_REDIS_URL=... BENCH_UPSTREAM=http://127.0.0.1:PORT/v1 python -m bench.bare_celery POOL CONCURRENCY

``POOL`` is ``threads`` or ``gevent`` (gevent patches the standard library before anything else is
imported, as ``celery -P gevent`` does). ``BENCH_ACK_EMULATION=0`` turns kombu's Redis ack emulation
off, as batchery's workers run by default, for a like-for-like comparison of the broker's cost.
"""

from __future__ import annotations

import os
import sys
from typing import Any

TASK = "bare.call"
QUEUE = "bare"


def make_app(broker: str, *, ack_emulation: bool = True) -> Any:
    from celery import Celery

    app = Celery("bare", broker=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    if not ack_emulation:
        app.conf.broker_transport_options = {"ack_emulation": False}
    return app


def register(app: Any, upstream: str, connections: int) -> None:
    from workers.upstream import make_upstream_client

    client = make_upstream_client(
        max_connections=connections
    )  # batchery's own pooled client, as a user would pick

    @app.task(name=TASK)  # type: ignore[untyped-decorator]
    def call(body: dict[str, Any]) -> None:
        response = client.post(
            upstream + "/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk-bench"},
            timeout=60,
        )
        response.raise_for_status()


def fill(broker: str, body: dict[str, Any], count: int) -> None:
    """Send ``count`` tasks over one connection (before the workers start)."""
    app = make_app(broker)
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task(TASK, args=[body], queue=QUEUE, producer=producer)
    app.close()


def main(argv: list[str]) -> int:
    pool, concurrency = argv[0], int(argv[1])
    if pool == "gevent":
        from gevent import monkey  # type: ignore[import-untyped]

        monkey.patch_all()
    app = make_app(os.environ["BENCH_REDIS_URL"], ack_emulation=os.environ.get("BENCH_ACK_EMULATION") != "0")
    register(app, os.environ["BENCH_UPSTREAM"], concurrency)
    app.worker_main(
        argv=[
            "worker",
            "-Q",
            QUEUE,
            "-P",
            pool,
            "-c",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
