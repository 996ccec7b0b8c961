"""Which delays and faults one admitted call suffers, from the settings, its directive and a random source.

- latency: the directive's ``latency=MS`` if given, else a draw from the configured distribution;
- hang: the directive's ``hang``, or with probability ``hang_rate``: stall ``hang_seconds`` more;
- error: with probability ``error_rate``, a 500, 502 or 503 (each as likely);
- malformed: the directive's ``malformed``, or with probability ``malformed_rate``: a 200 whose body is
  cut short, so it is not JSON.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.directives import Directive
from simulator.settings import SimulatorSettings

_ERROR_STATUSES = (500, 502, 503)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What happens to one call before it is answered."""

    delay_seconds: float = 0.0
    error_status: int | None = None
    malformed: bool = False


NO_FAULTS = FaultPlan()


def plan_faults(settings: SimulatorSettings, directive: Directive | None, rng: random.Random) -> FaultPlan:
    """Draw the delay and faults of one call."""
    if directive is None and settings.latency.is_zero and _no_random_faults(settings):
        return NO_FAULTS
    if directive is not None and directive.latency_ms is not None:
        delay = directive.latency_ms / 1000.0
    else:
        delay = settings.latency.sample_seconds(rng)
    if directive is not None and directive.hang:
        delay += settings.hang_seconds if directive.hang_seconds is None else directive.hang_seconds
    elif settings.hang_rate and rng.random() < settings.hang_rate:
        delay += settings.hang_seconds
    error = (
        rng.choice(_ERROR_STATUSES) if settings.error_rate and rng.random() < settings.error_rate else None
    )
    malformed = (directive is not None and directive.malformed) or bool(
        settings.malformed_rate and rng.random() < settings.malformed_rate
    )
    return FaultPlan(delay, error, malformed)


def _no_random_faults(settings: SimulatorSettings) -> bool:
    return not (settings.error_rate or settings.hang_rate or settings.malformed_rate)
