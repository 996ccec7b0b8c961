"""Everything one simulator instance remembers: settings, limits, counters and caches."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

from config.tiers import TierConfig
from simulator.directives import FailureCounter
from simulator.model_limits import LimitTable, build_limit_table, read_tiers
from simulator.prompt_cache import PromptCache
from simulator.ratelimit import Clock, RateLimiter
from simulator.settings import SettingsError, SimulatorSettings, apply_changes
from simulator.stats import SimulatorStats

CONTROL_ACTIONS = frozenset({"reset_limits", "reset_directives"})


class SimulatorState:
    """The mutable state behind the ASGI app; touched only from the event loop."""

    def __init__(
        self,
        settings: SimulatorSettings,
        tiers: TierConfig | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.tiers = tiers if tiers is not None else read_tiers(settings.tiers)
        self.table: LimitTable = build_limit_table(self.tiers, settings.limit_scale, settings.default_limits)
        self.limiter = RateLimiter(
            settings.quantum, clock, settings.count_rejected, smooth=settings.quantization == "bucket"
        )
        self.stats = SimulatorStats()
        self.failures = FailureCounter()
        self.prompt_cache = PromptCache()
        self.rng = rng if rng is not None else random.Random(settings.seed)

    def control(self, changes: Mapping[str, object]) -> None:
        """Apply ``POST /_control``: runtime settings and the actions reset_limits / reset_directives."""
        actions = {name: value for name, value in changes.items() if name in CONTROL_ACTIONS}
        for name, value in actions.items():
            if not isinstance(value, bool):
                raise SettingsError(f"{name}: expected true or false, got {value!r}")
        updated = apply_changes(self.settings, {k: v for k, v in changes.items() if k not in CONTROL_ACTIONS})
        if updated.limit_scale != self.settings.limit_scale:
            self.table = build_limit_table(self.tiers, updated.limit_scale, updated.default_limits)
        self.limiter.count_rejected = updated.count_rejected
        self.settings = updated
        if actions.get("reset_limits"):
            self.limiter.reset()
        if actions.get("reset_directives"):
            self.failures.clear()
