"""The plumbing that keeps a job cheap, against real Redis and a real HTTP server: the broker transport
that reuses its Redis client, metric writes gathered and flushed together, and the HTTP transport whose
threads each keep to one small connection pool."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from kombu import Queue

from config.settings import load_settings
from domain.metrics import catalog
from domain.metrics.buffer import BufferedMetricStore
from domain.metrics.store import MetricBatch, MetricStore
from infra.broker_transport import Channel
from infra.celery_conf import RUN_JOB_TASK, celery_config, send_many_by_name
from workers.sharded_transport import ShardedTransport

pytestmark = pytest.mark.integration


def test_the_broker_channel_reuses_one_client_until_its_pool_is_replaced(redis_url: str) -> None:
    app = Celery("transport-test", set_as_current=False)
    app.conf.update(celery_config(load_settings(redis_url=redis_url)))
    client = redis.Redis.from_url(redis_url)
    client.delete("transport-test")
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            assert isinstance(channel, Channel)
            first = channel._create_client()
            assert channel._create_client() is first
            channel._disconnect_pools()  # type: ignore[no-untyped-call]
            assert channel._create_client() is not first  # a new pool gets a new client
        for index in range(3):
            app.send_task(RUN_JOB_TASK, args=[f"job_{index}"], queue="transport-test")
        messages = [json.loads(raw) for raw in client.lrange("transport-test", 0, -1)]
        assert len(messages) == 3 and all(m["headers"]["task"] == RUN_JOB_TASK for m in messages)
    finally:
        client.delete("transport-test")
        app.close()


def test_a_round_of_messages_goes_out_as_one_pipelined_batch(redis_url: str) -> None:
    app = Celery("batch-send-test", set_as_current=False)
    app.conf.update(celery_config(load_settings(redis_url=redis_url)))
    client = redis.Redis.from_url(redis_url)
    client.delete("batch-a", "batch-b")
    ids = [f"job_{index}" for index in range(40)]
    try:
        with app.connection_for_write() as connection, app.producer_or_acquire() as producer:
            # kombu would quietly publish one by one if the channel refused batches
            assert connection.default_channel.supports_batch_publish
            assert producer.supports_batch_publish
        unsent = send_many_by_name(
            app, RUN_JOB_TASK, [(job_id, f"batch-{'ab'[i % 2]}") for i, job_id in enumerate(ids)]
        )
        queued = [json.loads(raw) for key in ("batch-a", "batch-b") for raw in client.lrange(key, 0, -1)]
    finally:
        client.delete("batch-a", "batch-b")
        app.close()

    assert unsent == []
    assert sorted(m["headers"]["argsrepr"] for m in queued) == sorted(repr([job_id]) for job_id in ids)
    assert all(m["headers"]["task"] == RUN_JOB_TASK for m in queued)


def test_a_batch_the_broker_does_not_take_is_answered_as_unsent() -> None:
    app = Celery("batch-send-down", set_as_current=False)
    # a port nothing listens on (port 9 is discard, closed here): the connection is refused at once
    app.conf.update(celery_config(load_settings(redis_url="redis://127.0.0.1:9/0")))
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "max_retries": 0}
    app.conf.broker_connection_retry = False
    try:
        assert send_many_by_name(app, RUN_JOB_TASK, [("job_a", "q"), ("job_b", "q")]) == ["job_a", "job_b"]
    finally:
        app.close()


def _receive_one(app: Celery, queue: str, *, ack: bool) -> tuple[dict[str, object], int]:
    """Consume one message from ``queue`` the way a worker does (late ack, prefetch 1); returns its body
    and the entries of kombu's unacknowledged-message hash in Redis while it is held."""
    received: list[Any] = []
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        with app.connection_for_read() as connection:
            consumer = connection.Consumer(
                [Queue(queue)], accept=["json"], callbacks=[lambda _body, message: received.append(message)]
            )
            consumer.qos(prefetch_count=1)
            with consumer:
                connection.drain_events(timeout=5)
                held = int(client.hlen("unacked"))
                if ack:
                    received[0].ack()
        return dict(received[0].headers), held
    finally:
        client.close()


@pytest.mark.parametrize("emulation", [False, True])
def test_consuming_costs_no_redis_bookkeeping_and_a_closed_consumer_gives_its_message_back(
    redis_url: str, emulation: bool
) -> None:
    app = Celery("ack-test", set_as_current=False)
    app.conf.update(celery_config(load_settings(redis_url=redis_url, broker_ack_emulation=emulation)))
    client = redis.Redis.from_url(redis_url)
    client.delete("ack-test", "unacked", "unacked_index")
    try:
        app.send_task(RUN_JOB_TASK, args=["job_a"], queue="ack-test")
        headers, held = _receive_one(app, "ack-test", ack=False)
        assert headers["task"] == RUN_JOB_TASK
        # by default a held message lives only in the worker's memory; kombu's ack emulation (the
        # setting on) writes every one to Redis as well, and removes it again on the ack
        assert held == (1 if emulation else 0)
        # closed without an ack (a worker's warm shutdown): the message is back in its queue
        assert client.llen("ack-test") == 1
        again, _ = _receive_one(app, "ack-test", ack=True)
        assert again["id"] == headers["id"]
        assert client.llen("ack-test") == 0 and client.hlen("unacked") == 0
    finally:
        client.delete("ack-test", "unacked", "unacked_index")
        client.close()
        app.close()


def test_buffered_metrics_add_up_and_reach_redis_only_when_flushed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = BufferedMetricStore(client, "buffertest", interval=3600)
    labels = ("standard", "chat", "gpt-4o-mini")
    for _ in range(5):
        batch = MetricBatch()
        batch.count(catalog.JOBS_SUBMITTED, labels)
        batch.add_window("standard", "gpt-4o-mini", "requests")
        store.write(batch, now=0.0)

    assert MetricStore(client, "buffertest").counters() == {}
    store.flush()

    counters = MetricStore(client, "buffertest").counters()
    assert counters[catalog.JOBS_SUBMITTED.name][labels] == 5
    window = MetricStore(client, "buffertest").window(now=store.clock())
    assert window[("standard", "gpt-4o-mini", "requests")] == 5


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_each_thread_keeps_to_one_small_pool_and_requests_go_through(echo_url: str) -> None:
    transport = ShardedTransport(max_connections=64, shard_size=16)
    assert len(transport._shards) == 4
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def work(name: str) -> None:
        client = httpx.Client(transport=transport, base_url=echo_url)
        for index in range(3):
            answer = client.post("/v1/echo", json={"n": index, "who": name})
            assert answer.json() == {"n": index, "who": name}
            with lock:
                assert seen.setdefault(name, id(transport._shard())) == id(transport._shard())

    threads = [threading.Thread(target=work, args=(f"t{index}",)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 8 and len(set(seen.values())) == 4  # round robin: two threads per pool
    transport.close()
