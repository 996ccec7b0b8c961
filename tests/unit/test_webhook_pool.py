"""The per-process delivery pool: the Celery task hands over and returns at once; a full backlog is
left for the poll instead of blocking a worker thread."""

from __future__ import annotations

import threading

import pytest

from workers.webhook_tasks import BACKLOG_PER_THREAD, DeliveryPool

pytestmark = pytest.mark.unit


def test_submit_returns_at_once_while_a_slow_delivery_runs_elsewhere() -> None:
    release = threading.Event()
    started: list[str] = []
    done = threading.Event()

    def slow(delivery_id: str) -> str:
        started.append(delivery_id)
        release.wait(timeout=10)
        if len(started) == 2:
            done.set()
        return "succeeded"

    pool = DeliveryPool(slow, threads=1)
    assert pool.submit("whd_1") and pool.submit("whd_2")  # neither call waits for the receiver
    release.set()
    assert done.wait(timeout=10)
    assert started == ["whd_1", "whd_2"]


def test_a_full_backlog_refuses_instead_of_blocking() -> None:
    release = threading.Event()
    pool = DeliveryPool(lambda _id: str(release.wait(timeout=10)), threads=1)
    accepted = [pool.submit(f"whd_{n}") for n in range(BACKLOG_PER_THREAD + 5)]
    release.set()
    assert accepted.count(False) >= 4
    assert all(accepted[:BACKLOG_PER_THREAD])


def test_a_raising_delivery_does_not_kill_the_thread() -> None:
    seen = threading.Event()

    def deliver(delivery_id: str) -> str:
        if delivery_id == "bad":
            raise RuntimeError("boom")
        seen.set()
        return "succeeded"

    pool = DeliveryPool(deliver, threads=1)
    pool.submit("bad")
    pool.submit("good")
    assert seen.wait(timeout=10)
