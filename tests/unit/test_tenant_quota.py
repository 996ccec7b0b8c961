"""QueueRoom: a tenant far below its limit is recounted at most once per window; near the limit
every submission is counted, and a refusal always comes from a real count (fake clock, fake count)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.tenancy.quotas import QueueRoom, TenantQueueFull

pytestmark = pytest.mark.unit


class Backlog:
    """The queued jobs per tenant, and how many times they were counted."""

    def __init__(self) -> None:
        self.queued: dict[str, int] = {}
        self.counts = 0

    def count(self, _session: Any, tenant_id: str, *, cap: int) -> int:
        self.counts += 1
        return min(self.queued.get(tenant_id, 0), cap)

    def submit(self, room: QueueRoom, tenant: str, limit: int) -> bool:
        self.queued[tenant] = self.queued.get(tenant, 0) + 1  # inserted first, then admitted
        try:
            room.admit_one(None, tenant_id=tenant, limit=limit)  # type: ignore[arg-type]
        except TenantQueueFull:
            self.queued[tenant] -= 1  # the transaction rolls back
            return False
        return True


def test_far_from_the_limit_one_count_per_window() -> None:
    now = [0.0]
    backlog = Backlog()
    room = QueueRoom(recount_after=1.0, clock=lambda: now[0], count=backlog.count)
    assert all(backlog.submit(room, "big", limit=1000) for _ in range(500))
    assert backlog.counts == 1
    now[0] = 1.5
    assert backlog.submit(room, "big", limit=1000)
    assert backlog.counts == 2


def test_near_the_limit_every_submission_counts_and_the_limit_holds() -> None:
    now = [0.0]
    backlog = Backlog()
    room = QueueRoom(recount_after=60.0, clock=lambda: now[0], count=backlog.count)
    admitted = [backlog.submit(room, "t", limit=100) for _ in range(150)]
    assert admitted == [True] * 100 + [False] * 50
    assert backlog.queued["t"] == 100
    assert backlog.counts == 1 + (100 - 90) + 50  # the first, each one in the last tenth, each refusal
    backlog.queued["t"] = 40  # jobs finished elsewhere
    assert backlog.submit(room, "t", limit=100)


def test_other_processes_can_lead_the_tally_only_within_one_window() -> None:
    now = [0.0]
    backlog = Backlog()
    room = QueueRoom(recount_after=1.0, clock=lambda: now[0], count=backlog.count)
    assert backlog.submit(room, "t", limit=100)
    backlog.queued["t"] += 95  # another API process admitted 95 meanwhile
    assert backlog.submit(room, "t", limit=100)  # still inside the window: the tally has not seen them
    now[0] = 1.0
    results = [backlog.submit(room, "t", limit=100) for _ in range(5)]
    assert results == [True, True, True, False, False] and backlog.queued["t"] == 100


def test_tenants_are_tallied_apart_and_the_tally_stays_bounded() -> None:
    backlog = Backlog()
    room = QueueRoom(count=backlog.count, max_tenants=3)
    for tenant in ("a", "b", "c", "d", "a"):
        assert backlog.submit(room, tenant, limit=10)
    assert backlog.counts == 5  # "a" was forgotten when the tally filled up, so it was counted again
