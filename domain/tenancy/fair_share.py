"""Which backlog jobs the dispatcher sends next (pure): priority first, then fair shares.

The backlog of a tier is split into lanes, one per (tenant, batch); jobs submitted outside a batch form
their tenant's ``None`` lane. Each lane is a stream in its own order (priority, higher first, then id,
oldest first). Filling ``room`` free places in the tier's queue is a k-way merge of those streams:

1. the highest priority at the head of any lane goes first, so an interactive job sent with a higher
   priority overtakes a running batch;
2. among equal priorities, the tenant with the fewest jobs in flight (in the queue or running, counting
   those picked in this round) goes first, so a tenant with 100,000 queued jobs cannot starve one with
   ten;
3. then the lane picked least in this round, then the lane order the caller gives (which it rotates
   from round to round), so a tenant's batches take turns.

Lanes are read lazily, a few rows at a time, so a round reads about ``room`` rows plus one small chunk
per lane, never the backlog.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Lane = tuple[str, str | None]
"""(tenant_id, batch_id); batch_id None holds the tenant's jobs outside any batch."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backlog job as the planner sees it."""

    job_id: str
    priority: int


Fetch = Callable[[Lane, Candidate | None, int], Sequence[Candidate]]
"""``fetch(lane, after, limit)``: up to ``limit`` of the lane's jobs that come after ``after`` (from the
start when None), in lane order."""


def window_size(concurrency: int, factor: float) -> int:
    """How many job ids a tier's queue may hold: ``factor`` times the tier's concurrency, at least one."""
    return max(1, math.ceil(concurrency * factor))


@dataclass
class _LaneCursor:
    lane: Lane
    order: int
    chunk: int
    buffer: list[Candidate] = field(default_factory=list)
    last: Candidate | None = None
    exhausted: bool = False
    picks: int = 0

    def head(self, fetch: Fetch) -> Candidate | None:
        if not self.buffer and not self.exhausted:
            rows = list(fetch(self.lane, self.last, self.chunk))
            self.exhausted = len(rows) < self.chunk
            self.buffer = rows[::-1]  # pop() from the end
        return self.buffer[-1] if self.buffer else None

    def take(self) -> Candidate:
        self.last = self.buffer.pop()
        self.picks += 1
        return self.last


def plan(room: int, lanes: Sequence[Lane], load: Mapping[str, int], fetch: Fetch) -> list[str]:
    """Up to ``room`` job ids to send, in the order they should be sent.

    ``lanes`` in the order ties are broken (rotate it between rounds); ``load`` is each tenant's jobs in
    flight now (tenants not named have none).
    """
    if room <= 0 or not lanes:
        return []
    chunk = min(room, math.ceil(room / len(lanes)) + 1)
    cursors = [_LaneCursor(lane, order, chunk) for order, lane in enumerate(lanes)]
    tenant_load = {lane[0]: load.get(lane[0], 0) for lane in lanes}

    def key(cursor: _LaneCursor, head: Candidate) -> tuple[int, int, int, int]:
        return (-head.priority, tenant_load[cursor.lane[0]], cursor.picks, cursor.order)

    heap: list[tuple[tuple[int, int, int, int], int]] = []
    for index, cursor in enumerate(cursors):
        head = cursor.head(fetch)
        if head is not None:
            heap.append((key(cursor, head), index))
    heapq.heapify(heap)
    chosen: list[str] = []
    while heap and len(chosen) < room:
        stale_key, index = heapq.heappop(heap)
        cursor = cursors[index]
        head = cursor.head(fetch)
        if head is None:
            continue
        fresh = key(cursor, head)
        if fresh != stale_key:  # its tenant was picked meanwhile: keys only grow, so re-queue it
            heapq.heappush(heap, (fresh, index))
            continue
        chosen.append(cursor.take().job_id)
        tenant_load[cursor.lane[0]] += 1
        following = cursor.head(fetch)
        if following is not None:
            heapq.heappush(heap, (key(cursor, following), index))
    return chosen


def rotate(lanes: Sequence[Lane], offset: int) -> list[Lane]:
    """``lanes`` starting at ``offset`` (modulo their number), for a fair tie order between rounds."""
    if not lanes:
        return []
    start = offset % len(lanes)
    return [*lanes[start:], *lanes[:start]]
