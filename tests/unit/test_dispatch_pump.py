"""The dispatch pump's rounds: a full round (recovery included) first and then once per interval, and
rounds that only top the windows up when nudged in between."""

from __future__ import annotations

import threading
from typing import Any

from workers.dispatcher import DispatchPump


class RecordingDispatcher:
    """Stands in for ``Dispatcher``: records whether each round recovered."""

    def __init__(self, rounds_wanted: int) -> None:
        self.recovered: list[bool] = []
        self.done = threading.Event()
        self.rounds_wanted = rounds_wanted

    def run_once(self, *, recover: bool = True) -> list[Any]:
        self.recovered.append(recover)
        if len(self.recovered) >= self.rounds_wanted:
            self.done.set()
        return []


def test_nudged_rounds_between_full_rounds_only_top_up() -> None:
    fake = RecordingDispatcher(rounds_wanted=4)
    pump = DispatchPump(lambda: fake, interval=3600, min_gap=0)  # type: ignore[arg-type,return-value]
    pump.start()
    try:
        while not fake.done.is_set():
            pump.nudge()
            fake.done.wait(0.01)
    finally:
        pump.stop()
    assert fake.recovered[:4] == [True, False, False, False]


def test_every_round_is_full_when_the_interval_has_passed() -> None:
    fake = RecordingDispatcher(rounds_wanted=3)
    pump = DispatchPump(lambda: fake, interval=0.001, min_gap=0.002)  # type: ignore[arg-type,return-value]
    pump.start()
    try:
        assert fake.done.wait(30)
    finally:
        pump.stop()
    assert fake.recovered[:3] == [True, True, True]


def test_a_pump_of_its_own_tops_up_on_its_timer_without_nudges() -> None:
    fake = RecordingDispatcher(rounds_wanted=3)
    pump = DispatchPump(lambda: fake, interval=3600, min_gap=0, top_up_interval=0.001)  # type: ignore[arg-type,return-value]
    pump.start()
    try:
        assert fake.done.wait(30)
    finally:
        pump.stop()
    assert fake.recovered[:3] == [True, False, False]
