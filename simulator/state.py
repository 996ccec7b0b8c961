"""Everything one simulator instance remembers: settings, limits, counters and caches."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

from config.tiers import TierConfig
from simulator.batch_lifecycle import BatchTimings, SimBatch
from simulator.directives import FailureCounter
from simulator.files_api import FileStore
from simulator.model_limits import LimitTable, build_limit_table, read_tiers
from simulator.prompt_cache import PromptCache
from simulator.ratelimit import Clock, RateLimiter
from simulator.settings import SettingsError, SimulatorSettings, apply_changes
from simulator.stats import SimulatorStats

CONTROL_ACTIONS = frozenset({"reset_limits", "reset_directives"})
COUNT_ACTIONS = frozenset({"expire_next_batches"})
WallClock = Callable[[], float]


class SimulatorState:
    """The mutable state behind the ASGI app; touched only from the event loop."""

    def __init__(
        self,
        settings: SimulatorSettings,
        tiers: TierConfig | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        wall_clock: WallClock = time.time,
    ) -> None:
        self.settings = settings
        self.wall_clock = wall_clock
        self.files = FileStore(wall_clock)
        self.batches: dict[str, SimBatch] = {}
        self.expire_next_batches = 0
        self.tiers = tiers if tiers is not None else read_tiers(settings.tiers)
        self.table: LimitTable = build_limit_table(self.tiers, settings.limit_scale, settings.default_limits)
        self.limiter = RateLimiter(
            settings.quantum, clock, settings.count_rejected, smooth=settings.quantization == "bucket"
        )
        self.stats = SimulatorStats()
        self.failures = FailureCounter()
        self.prompt_cache = PromptCache()
        self.rng = rng if rng is not None else random.Random(settings.seed)

    def batch_timings(self) -> BatchTimings:
        """The phase durations a batch created now gets."""
        settings = self.settings
        return BatchTimings(
            settings.batch_validating_seconds,
            settings.batch_processing_seconds,
            settings.batch_line_seconds,
            settings.batch_finalizing_seconds,
            settings.batch_cancelling_seconds,
        )

    def control(self, changes: Mapping[str, object]) -> None:
        """Apply ``POST /_control``: runtime settings, the actions reset_limits / reset_directives, and
        ``expire_next_batches: N`` (the next N batches created expire)."""
        actions = {name: value for name, value in changes.items() if name in CONTROL_ACTIONS}
        for name, value in actions.items():
            if not isinstance(value, bool):
                raise SettingsError(f"{name}: expected true or false, got {value!r}")
        expire = changes.get("expire_next_batches")
        if "expire_next_batches" in changes and (
            isinstance(expire, bool) or not isinstance(expire, int) or expire < 0
        ):
            raise SettingsError(f"expire_next_batches: expected an integer of at least 0, got {expire!r}")
        plain = {k: v for k, v in changes.items() if k not in CONTROL_ACTIONS and k not in COUNT_ACTIONS}
        updated = apply_changes(self.settings, plain)
        if updated.limit_scale != self.settings.limit_scale:
            self.table = build_limit_table(self.tiers, updated.limit_scale, updated.default_limits)
        self.limiter.count_rejected = updated.count_rejected
        self.settings = updated
        if actions.get("reset_limits"):
            self.limiter.reset()
        if actions.get("reset_directives"):
            self.failures.clear()
        if isinstance(expire, int):
            self.expire_next_batches = expire
