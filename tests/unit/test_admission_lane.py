"""``api.admission.Lane``: at most ``limit`` in flight, at most ``limit`` waiting, a freed slot handed to
the oldest waiter, and a waiter that waits too long gives up without taking a slot."""

from __future__ import annotations

import asyncio

import pytest

from api.admission import WAITING_PER_SLOT, Lane

pytestmark = pytest.mark.unit


def test_a_freed_slot_goes_to_the_oldest_waiter_and_the_excess_is_refused() -> None:
    async def scenario() -> tuple[list[bool], int, int]:
        lane = Lane("write", limit=1, max_wait=5.0)
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
        lane = Lane("read", limit=1, max_wait=0.01)
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
        lane = Lane("write", limit=1, max_wait=0.0)
        await lane.enter()
        return await lane.enter()

    assert asyncio.run(scenario()) is False
