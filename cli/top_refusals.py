"""What ``batchery top`` shows of the API's refusals (``api.admission``): requests answered 503
``overloaded`` by lane, over the last minute and since the counters began."""

from __future__ import annotations

from dataclasses import dataclass

from domain.metrics.catalog import REFUSALS_WINDOW_TIER, REQUESTS_REFUSED
from domain.metrics.store import MetricStore

LANES = ("write", "read")


@dataclass(frozen=True, slots=True)
class Refusals:
    """Refused requests per lane: ``last_minute`` from the 10-second window, ``total`` from the counter."""

    last_minute: dict[str, float]
    total: dict[str, float]

    def caption(self) -> str:
        recent = ", ".join(f"{lane}s {self.last_minute.get(lane, 0.0):.0f}" for lane in LANES)
        total = ", ".join(f"{lane}s {self.total.get(lane, 0.0):.0f}" for lane in LANES)
        return f"API refused (503 overloaded): last 60 s {recent}; in all {total}"


def read_refusals(store: MetricStore, now: float) -> Refusals:
    window = store.window(now)
    last_minute = {lane: window.get((REFUSALS_WINDOW_TIER, lane, "refused"), 0.0) for lane in LANES}
    counters = store.counters().get(REQUESTS_REFUSED.name, {})
    total = {lane: counters.get((lane,), 0.0) for lane in LANES}
    return Refusals(last_minute, total)
