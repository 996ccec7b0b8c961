"""Delivering to a real receiver on an allow-listed loopback address: signatures, the retry schedule,
redirects, 410, Retry-After, timeouts and the delivery log."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from config.settings import Settings, load_settings
from domain.storage.models import WebhookDelivery, utcnow
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.webhooks import events
from domain.webhooks import repository as repo
from tests.support.webhook_receiver import receiver
from workers.safe_http import make_webhook_client
from workers.webhooks import WebhookDeliverer

pytestmark = pytest.mark.integration

SECRET_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_B = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdHM="


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return load_settings(
        database_url=sqlite_url,
        webhook_secrets=[SECRET_A, SECRET_B],
        webhook_allowed_networks=["127.0.0.1/32"],
        webhook_retry_schedule="0,0,0",
        webhook_timeout_seconds=0.5,
    )


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def deliverer(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[WebhookDeliverer]:
    with make_webhook_client(settings.webhook_timeout_seconds) as client:
        yield WebhookDeliverer(settings, sessions, client)


def _record(sessions: sessionmaker[Session], url: str, tenant: str = "default") -> str:
    with session_scope(sessions) as session:
        return events.record_event(
            session,
            tenant_id=tenant,
            event_type="job.succeeded",
            subject_id="job_1",
            data={"id": "job_1", "status": "succeeded"},
            url=url,
        )


def _delivery(sessions: sessionmaker[Session], delivery_id: str) -> WebhookDelivery:
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        return delivery


def _log(sessions: sessionmaker[Session], delivery_id: str) -> list[tuple[int, int | None, str | None]]:
    with session_scope(sessions) as session:
        attempts = repo.attempts_by_delivery(session, [delivery_id])[delivery_id]
        return [(a.number, a.status_code, a.error) for a in attempts]


def test_retries_keep_one_webhook_id_and_every_attempt_verifies(
    deliverer: WebhookDeliverer, sessions: sessionmaker[Session]
) -> None:
    with receiver(flaky=["500", "500", "200"]) as (base, script):
        delivery_id = _record(sessions, f"{base}/flaky")
        outcomes = [deliverer.deliver(delivery_id) for _ in range(4)]
    assert outcomes == ["retrying", "retrying", "succeeded", "skipped"]
    received = script.received
    assert len(received) == 3
    assert len({r.headers["webhook-id"] for r in received}) == 1
    delivery = _delivery(sessions, delivery_id)
    assert received[0].headers["webhook-id"] == delivery.event_id
    for request in received:
        assert request.body == delivery.payload
        assert request.headers["host"] == base.removeprefix("http://")
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (SECRET_A, SECRET_B):
            assert Webhook(secret).verify(request.body, request.headers)["data"]["id"] == "job_1"
    assert [(n, s) for n, s, _ in _log(sessions, delivery_id)] == [(1, 500), (2, 500), (3, 200)]
    with session_scope(sessions) as session:
        last = repo.attempts_by_delivery(session, [delivery_id])[delivery_id][-1]
        assert last.response_excerpt == "x" * 1024  # the first 1 KB of a 3 KB answer
    assert delivery.status == "succeeded" and delivery.delivered_at is not None


def test_the_schedule_running_out_fails_the_delivery(
    deliverer: WebhookDeliverer, sessions: sessionmaker[Session]
) -> None:
    with receiver(down=["500"]) as (base, script):
        delivery_id = _record(sessions, f"{base}/down")
        outcomes = [deliverer.deliver(delivery_id) for _ in range(4)]
    assert outcomes == ["retrying", "retrying", "failed", "skipped"]
    assert len(script.received) == 3
    assert _delivery(sessions, delivery_id).status == "failed"


def test_a_redirect_is_a_failure_and_is_not_followed(
    deliverer: WebhookDeliverer, sessions: sessionmaker[Session]
) -> None:
    with receiver(moved=["r", "200"]) as (base, script):
        delivery_id = _record(sessions, f"{base}/moved")
        assert deliverer.deliver(delivery_id) == "retrying"
        assert [r.path for r in script.received] == ["/moved"]
        assert deliverer.deliver(delivery_id) == "succeeded"
    (number, status, error), _ = _log(sessions, delivery_id)
    assert (number, status) == (1, 302) and "redirect" in (error or "")
    assert [r.path for r in script.received] == ["/moved", "/moved"]


def test_410_gone_stops_the_retries(deliverer: WebhookDeliverer, sessions: sessionmaker[Session]) -> None:
    with receiver(gone=["410", "200"]) as (base, script):
        delivery_id = _record(sessions, f"{base}/gone")
        assert deliverer.deliver(delivery_id) == "failed"
        assert deliverer.deliver(delivery_id) == "skipped"
    assert len(script.received) == 1
    assert _log(sessions, delivery_id)[0][1] == 410


def test_retry_after_is_honoured(deliverer: WebhookDeliverer, sessions: sessionmaker[Session]) -> None:
    with receiver(busy=["ra120"]) as (base, _script):
        delivery_id = _record(sessions, f"{base}/busy")
        before = utcnow()
        assert deliverer.deliver(delivery_id) == "retrying"
        assert deliverer.deliver(delivery_id) == "skipped"  # not due for two minutes
    next_at = _delivery(sessions, delivery_id).next_attempt_at
    assert next_at is not None
    assert next_at.replace(tzinfo=None) >= (before + timedelta(seconds=119)).replace(tzinfo=None)


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    deliverer: WebhookDeliverer, sessions: sessionmaker[Session]
) -> None:
    with receiver(slow=["200:3"]) as (base, _script):
        delivery_id = _record(sessions, f"{base}/slow")
        assert deliverer.deliver(delivery_id) == "retrying"
    [(_, status, error)] = _log(sessions, delivery_id)
    assert status is None and "timed out" in (error or "")


def test_the_payload_is_the_exact_stored_event(
    deliverer: WebhookDeliverer, sessions: sessionmaker[Session]
) -> None:
    with receiver() as (base, script):
        delivery_id = _record(sessions, f"{base}/ok")
        assert deliverer.deliver(delivery_id) == "succeeded"
    event = json.loads(script.received[0].body)
    assert event["object"] == "event" and event["type"] == "job.succeeded"
    assert event["id"] == script.received[0].headers["webhook-id"]
    assert script.received[0].headers["content-type"] == "application/json"


def test_each_attempt_is_counted_in_the_delivery_metrics(
    settings: Settings, sessions: sessionmaker[Session], redis_url: str
) -> None:
    import redis

    from domain.metrics.store import record_webhook_delivery

    counters = redis.Redis.from_url(redis_url)
    prefix = f"test-{id(counters)}"
    with make_webhook_client(5.0) as client:
        counted = WebhookDeliverer(
            settings,
            sessions,
            client,
            on_result=lambda outcome: record_webhook_delivery(counters, outcome, prefix=prefix),
        )
        with receiver(flaky=["500", "200"]) as (base, _script):
            delivery_id = _record(sessions, f"{base}/flaky")
            assert [counted.deliver(delivery_id) for _ in range(2)] == ["retrying", "succeeded"]
    stored = {
        key.decode(): value.decode()
        for name in counters.scan_iter(f"{prefix}*")
        for key, value in counters.hgetall(name).items()
    }
    counters.delete(*counters.keys(f"{prefix}*"))
    assert any("retrying" in key and value == "1" for key, value in stored.items()), stored
    assert any("succeeded" in key and value == "1" for key, value in stored.items()), stored


@contextmanager
def _trickler(gate: threading.Event | None = None) -> Iterator[tuple[str, list[int]]]:
    """A receiver that reads the request, then answers one byte every 50 ms (each read well inside the
    client's timeout), or, given ``gate``, answers nothing until it is set. Yields its URL and, per
    connection, how many bytes it managed to send before the client went away."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-padding: " + b"p" * 400 + b"\r\n\r\nok"
    sent: list[int] = []
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if gate is not None:
                gate.wait(30)
                conn.sendall(answer)
                return
            count = 0
            try:
                for byte in answer:
                    if stop.is_set():
                        break
                    conn.sendall(bytes([byte]))
                    count += 1
                    time.sleep(0.05)
            except OSError:
                pass
            sent.append(count)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", sent
    finally:
        stop.set()
        server.close()


def test_a_trickling_receiver_is_cut_off_at_the_attempt_s_deadline(
    deliverer: WebhookDeliverer, sessions: sessionmaker[Session]
) -> None:
    assert deliverer.attempt_deadline < deliverer.lease_seconds
    with _trickler() as (base, sent):
        delivery_id = _record(sessions, f"{base}/trickle")
        assert deliverer.deliver(delivery_id) == "retrying"
        [(_, status, error)] = _log(sessions, delivery_id)
        assert status is None and "deadline" in (error or ""), error
        for _ in range(100):  # the receiver notices the closed connection at its next byte
            if sent:
                break
            time.sleep(0.05)
    assert sent and sent[0] < 300, sent  # the whole answer would have taken 20 s


def test_one_tenant_holds_at_most_half_the_delivery_threads(sqlite_url: str) -> None:
    settings = load_settings(
        database_url=sqlite_url,
        webhook_secrets=[SECRET_A],
        webhook_allowed_networks=["127.0.0.1/32"],
        webhook_retry_schedule="0,0,0",
        webhook_concurrency=4,
    )
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    gate = threading.Event()
    try:
        with make_webhook_client(5.0) as client, _trickler(gate) as (slow, _), receiver() as (fast, script):
            deliverer = WebhookDeliverer(settings, sessions, client)
            held = [_record(sessions, f"{slow}/a{i}", tenant="noisy") for i in range(3)]
            running = [threading.Thread(target=deliverer.deliver, args=(held[i],)) for i in range(2)]
            for thread in running:
                thread.start()
            for _ in range(200):
                if deliverer.tenant_slots.busy("noisy") == 2:
                    break
                time.sleep(0.02)
            assert deliverer.tenant_slots.busy("noisy") == 2
            assert deliverer.deliver(held[2]) == "deferred"  # its share is taken: left for the poll
            assert _delivery(sessions, held[2]).dispatched_at is None
            assert deliverer.deliver(_record(sessions, f"{fast}/ok", tenant="quiet")) == "succeeded"
            assert len(script.received) == 1
            gate.set()
            for thread in running:
                thread.join(10)
            assert deliverer.deliver(held[2]) == "succeeded"
    finally:
        gate.set()
        engine.dispose()
