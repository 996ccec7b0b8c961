"""The dispatcher's choice (pure): priority first, then the least-loaded tenant, then lanes in turn;
lanes are read a few rows at a time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from domain.tenancy.fair_share import Candidate, Lane, plan, rotate, window_size

pytestmark = pytest.mark.unit


class FakeBacklog:
    """Lanes of (job id, priority) in lane order, and a count of the rows each fetch read."""

    def __init__(self, lanes: dict[Lane, list[tuple[str, int]]]) -> None:
        self.lanes = {lane: sorted(jobs, key=lambda job: (-job[1], job[0])) for lane, jobs in lanes.items()}
        self.rows_read = 0
        self.fetches = 0

    def fetch(self, lane: Lane, after: Candidate | None, limit: int) -> Sequence[Candidate]:
        jobs = self.lanes[lane]
        start = 0
        if after is not None:
            start = next(i for i, (job_id, _) in enumerate(jobs) if job_id == after.job_id) + 1
        rows = [Candidate(job_id, priority) for job_id, priority in jobs[start : start + limit]]
        self.rows_read += len(rows)
        self.fetches += 1
        return rows


BIG: Lane = ("big", None)
SMALL: Lane = ("small", None)


def test_a_small_tenant_is_served_before_a_loaded_big_one() -> None:
    backlog = FakeBacklog(
        {BIG: [(f"b{i:05}", 0) for i in range(1000)], SMALL: [(f"s{i}", 0) for i in range(3)]}
    )
    chosen = plan(4, [BIG, SMALL], {"big": 10, "small": 0}, backlog.fetch)
    assert chosen == ["s0", "s1", "s2", "b00000"]


def test_equal_loads_alternate_between_tenants() -> None:
    backlog = FakeBacklog({BIG: [(f"b{i}", 0) for i in range(10)], SMALL: [(f"s{i}", 0) for i in range(10)]})
    chosen = plan(6, [BIG, SMALL], {}, backlog.fetch)
    assert chosen == ["b0", "s0", "b1", "s1", "b2", "s2"]


def test_higher_priority_goes_first_whatever_the_load() -> None:
    backlog = FakeBacklog({BIG: [(f"b{i}", 0) for i in range(50)] + [("urgent", 10)], SMALL: [("s0", 0)]})
    chosen = plan(3, [SMALL, BIG], {"big": 100}, backlog.fetch)
    assert chosen[0] == "urgent"
    assert chosen[1] == "s0"


def test_a_tenants_batches_take_turns() -> None:
    one: Lane = ("t", "batch_1")
    two: Lane = ("t", "batch_2")
    backlog = FakeBacklog({one: [(f"x{i}", -1) for i in range(10)], two: [(f"y{i}", -1) for i in range(10)]})
    assert plan(4, [one, two], {}, backlog.fetch) == ["x0", "y0", "x1", "y1"]


def test_a_round_reads_about_room_rows_not_the_backlog() -> None:
    backlog = FakeBacklog(
        {BIG: [(f"b{i:06}", 0) for i in range(100_000)], SMALL: [(f"s{i}", 0) for i in range(5)]}
    )
    chosen = plan(16, [BIG, SMALL], {}, backlog.fetch)
    assert len(chosen) == 16 and set(chosen) >= {f"s{i}" for i in range(5)}
    assert backlog.rows_read <= 16 + 2 * 9


def test_no_room_or_no_lanes_chooses_nothing() -> None:
    backlog = FakeBacklog({BIG: [("b", 0)]})
    assert plan(0, [BIG], {}, backlog.fetch) == []
    assert plan(5, [], {}, backlog.fetch) == []
    assert backlog.fetches == 0
    assert plan(5, [BIG], {}, backlog.fetch) == ["b"]


def test_rotation_and_window_size() -> None:
    lanes: list[Lane] = [("a", None), ("b", None), ("c", None)]
    assert rotate(lanes, 4) == [("b", None), ("c", None), ("a", None)]
    assert rotate([], 3) == []
    assert window_size(32, 2.0) == 64
    assert window_size(3, 0.1) == 1
