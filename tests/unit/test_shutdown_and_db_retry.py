"""The shutdown gate and the database-outage retry, on injected clocks and sleeps."""

from __future__ import annotations

import threading

import pytest

from domain.errors import Unavailable
from workers.db_retry import retry_unavailable
from workers.shutdown import ShutdownGate, ShuttingDown

pytestmark = pytest.mark.unit


def test_gate_sleeps_until_shutdown_then_raises() -> None:
    gate = ShutdownGate()
    gate.sleep(0)
    gate.check()
    assert not gate.stopping
    expired = threading.Event()
    gate.begin(0.01, on_expired=expired.set)
    assert gate.stopping and gate.is_stopping()
    with pytest.raises(ShuttingDown):
        gate.sleep(60)
    with pytest.raises(ShuttingDown):
        gate.check()
    assert expired.wait(5)


def test_a_sleep_in_progress_ends_when_shutdown_begins() -> None:
    gate = ShutdownGate()
    raised = threading.Event()

    def sleeper() -> None:
        try:
            gate.sleep(60)
        except ShuttingDown:
            raised.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    gate.begin(60)
    thread.join(5)
    assert raised.is_set()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_retry_rides_out_an_outage_with_growing_waits() -> None:
    clock = FakeClock()
    calls = []

    def write() -> str:
        calls.append(clock.now)
        if len(calls) < 5:
            raise Unavailable()
        return "stored"

    assert (
        retry_unavailable(write, deadline=60, what="test", sleep=clock.sleep, clock=lambda: clock.now)
        == "stored"
    )
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0]


def test_retry_gives_up_at_the_deadline() -> None:
    clock = FakeClock()

    def down() -> None:
        raise Unavailable()

    with pytest.raises(Unavailable):
        retry_unavailable(down, deadline=10, what="test", sleep=clock.sleep, clock=lambda: clock.now)
    assert sum(clock.sleeps) <= 10
    assert clock.sleeps[-1] <= 5.0
