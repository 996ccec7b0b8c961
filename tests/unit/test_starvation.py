"""The backoff a starved job earns before it is given back (``workers.starvation``), on a fake clock."""

from __future__ import annotations

import pytest

from workers.limiter import LimiterTimeout
from workers.starvation import StarvedBudgets

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_per_give_back_up_to_the_cap_and_never_past_the_wait() -> None:
    clock = Clock()
    starved = StarvedBudgets(base=1.0, cap=10.0, forget_after=60.0, clock=clock)
    delays = [starved.delay("std:m", 3600.0) for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 10, 10], strict=True):
        assert 0.8 * ceiling <= delay <= ceiling
    assert starved.delay("std:m", 0.25) <= 0.25
    assert 0.8 <= starved.delay("other:m", 3600.0) <= 1.0  # budgets are counted apart


def test_backoff_starts_again_once_the_budget_has_not_starved_for_a_while() -> None:
    clock = Clock()
    starved = StarvedBudgets(base=1.0, cap=10.0, forget_after=60.0, clock=clock)
    for _ in range(4):
        starved.delay("std:m", 3600.0)
    clock.now += 61
    assert starved.delay("std:m", 3600.0) <= 1.0


def test_back_off_sleeps_in_steps_and_stops_when_the_worker_stops() -> None:
    starved = StarvedBudgets(base=4.0, cap=10.0, clock=Clock())
    naps: list[float] = []
    slept = starved.back_off(LimiterTimeout("std:m", 0.0, 3600.0), sleep=naps.append, step=0.5)
    assert 3.2 <= slept <= 4.0 and max(naps) <= 0.5 and len(naps) >= 7
    naps.clear()
    stop_after = iter([False, False, True])
    starved.back_off(
        LimiterTimeout("std:m", 0.0, 3600.0), sleep=naps.append, stopping=lambda: next(stop_after)
    )
    assert naps == [0.5, 0.5]
