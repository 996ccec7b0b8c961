"""``api.admission.AdmissionLane``: at most ``limit`` in flight, at most ``limit`` waiting, a freed slot
handed to the oldest waiter, a waiter that waits too long gives up without taking a slot, and refusals
beyond their pace wait their turn."""

from __future__ import annotations

import asyncio

import pytest

from api.admission import MAX_REFUSAL_DELAY, REFUSALS_PER_SERVED, WAITING_PER_SLOT, AdmissionLane

pytestmark = pytest.mark.unit


def test_a_freed_slot_goes_to_the_oldest_waiter_and_the_excess_is_refused() -> None:
    async def scenario() -> tuple[list[bool], int, int]:
        lane = AdmissionLane("write", limit=1, max_wait=5.0)
        assert await lane.enter()
        waiting = [asyncio.create_task(lane.enter()) for _ in range(WAITING_PER_SLOT)]
        await asyncio.sleep(0)
        refused = await lane.enter()  # as many wait as may: refused at once
        for _ in range(WAITING_PER_SLOT):
            lane.leave()
        results = [*[await task for task in waiting], refused]
        return results, lane.in_flight, len(lane.waiters)

    results, in_flight, waiting = asyncio.run(scenario())
    assert results == [True] * WAITING_PER_SLOT + [False]
    assert (in_flight, waiting) == (1, 0)


def test_a_waiter_gives_up_after_its_wait_and_leaves_no_slot_taken() -> None:
    async def scenario() -> tuple[bool, int, int, bool]:
        lane = AdmissionLane("read", limit=1, max_wait=0.01)
        assert await lane.enter()
        gave_up = await lane.enter()
        lane.leave()
        after = await lane.enter()
        return gave_up, lane.in_flight, len(lane.waiters), after

    gave_up, in_flight, waiting, after = asyncio.run(scenario())
    assert gave_up is False
    assert after is True
    assert (in_flight, waiting) == (1, 0)


def test_no_wait_refuses_at_once() -> None:
    async def scenario() -> bool:
        lane = AdmissionLane("write", limit=1, max_wait=0.0)
        await lane.enter()
        return await lane.enter()

    assert asyncio.run(scenario()) is False


def test_once_its_rate_is_measured_a_request_behind_too_much_work_is_refused_at_once() -> None:
    """A burst into an unmeasured lane waits in the whole room; once the lane has served about 52
    requests a second while full, at most 5 may wait (0.1 s of that work), and the rest are refused."""

    async def scenario() -> tuple[float, bool, bool]:
        now = [0.0]
        lane = AdmissionLane("write", limit=10, max_wait=5.0, clock=lambda: now[0])
        for _ in range(10):
            assert await lane.enter()
        burst = [asyncio.create_task(lane.enter()) for _ in range(4 * 10)]
        await asyncio.sleep(0)
        assert len(lane.waiters) == 40  # nothing measured yet: the burst waits
        for _ in range(30):  # one served every 20 ms while others wait
            now[0] += 0.02
            lane.leave()
        await asyncio.sleep(0)
        refused = not await lane.enter()  # 10 waiting: 0.19 s of work
        for task in burst[30:36]:
            task.cancel()
        await asyncio.gather(*burst[30:36], return_exceptions=True)
        assert len(lane.waiters) == 4
        late = asyncio.create_task(lane.enter())  # 4 waiting: it may wait
        await asyncio.sleep(0)
        waits = not late.done()
        for task in [*burst, late]:
            task.cancel()
        return lane.while_full.per_second, refused, waits

    rate, refused, waits = asyncio.run(scenario())
    assert rate == pytest.approx(52, rel=0.05)
    assert refused and waits


def _measured_lane(rate: float, now: list[float]) -> AdmissionLane:
    lane = AdmissionLane("write", limit=8, max_wait=1.0, clock=lambda: now[0])
    lane.served.per_second = rate
    return lane


def test_refusals_no_faster_than_their_pace_are_answered_at_once() -> None:
    now = [100.0]
    lane = _measured_lane(50.0, now)
    delays = []
    for _ in range(20):
        delays.append(lane.refusal_delay())
        now[0] += 1 / (REFUSALS_PER_SERVED * 50.0)  # exactly the pace
    assert delays == [0.0] * 20
    assert AdmissionLane("write", limit=8, max_wait=1.0).refusal_delay() == 0.0  # no rate measured yet


def test_the_served_rate_counts_every_request_served_and_skips_pauses() -> None:
    now = [100.0]
    lane = AdmissionLane("write", limit=8, max_wait=1.0, clock=lambda: now[0])
    lane.leave()  # after a long idle: a new window starts, nothing is folded
    assert lane.served.per_second == 0.0
    for _ in range(150):  # 200 a second for 0.75 s, no waiters
        now[0] += 0.005
        lane.in_flight += 1
        lane.leave()
    assert lane.served.per_second == pytest.approx(200, rel=0.03)
    now[0] += 60.0  # a pause: dropped, not averaged in
    lane.in_flight += 1
    lane.leave()
    assert lane.served.per_second == pytest.approx(200, rel=0.03)


def test_refusals_faster_than_their_pace_wait_their_turn_up_to_the_bound() -> None:
    """A caller that sends again the moment it is refused: 100 refusals at one instant, a lane that
    serves 64 a second while full. They are answered one pace apart, each in turn, until a turn would be
    more than the bound away; the rest are answered at once and book no turn."""
    now = [100.0]
    lane = _measured_lane(64.0, now)  # a pace whose spacing is exact in binary
    delays = [lane.refusal_delay() for _ in range(100)]
    spacing = 1 / (REFUSALS_PER_SERVED * 64.0)
    booked = int(MAX_REFUSAL_DELAY / spacing) + 1
    assert delays[:booked] == pytest.approx([i * spacing for i in range(booked)])
    assert delays[booked:] == [0.0] * (100 - booked)
    now[0] += 10.0  # the flood is over: a refusal is answered at once again
    assert lane.refusal_delay() == 0.0
