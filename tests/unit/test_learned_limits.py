"""Learning the upstream's real limits from its headers."""

from __future__ import annotations

import pytest

from workers.buckets import Budget
from workers.learned_limits import LearnedLimits
from workers.ratelimit_headers import RateLimitState

pytestmark = pytest.mark.unit

CONFIGURED = Budget("standard:gpt-4o-mini", rpm=1000, tpm=100_000, burst_seconds=1.0)


def test_a_lower_upstream_limit_is_used_and_a_raised_one_forgotten() -> None:
    learned = LearnedLimits()
    assert learned.apply(CONFIGURED) is CONFIGURED
    learned.learn(CONFIGURED, RateLimitState(limit_requests=800, limit_tokens=80_000))
    lowered = learned.apply(CONFIGURED)
    assert (lowered.rpm, lowered.tpm, lowered.name) == (800, 80_000, CONFIGURED.name)
    learned.learn(CONFIGURED, RateLimitState(limit_requests=1000))  # requests back up; tokens still low
    assert (learned.apply(CONFIGURED).rpm, learned.apply(CONFIGURED).tpm) == (1000, 80_000)
    learned.learn(CONFIGURED, RateLimitState(limit_tokens=500_000))
    assert learned.apply(CONFIGURED) is CONFIGURED


@pytest.mark.parametrize(
    "state",
    [
        RateLimitState(),
        RateLimitState(remaining_requests=3),
        RateLimitState(limit_requests=0),
        RateLimitState(limit_requests=5000, limit_tokens=1_000_000),
    ],
)
def test_headers_that_say_nothing_lower_change_nothing(state: RateLimitState) -> None:
    learned = LearnedLimits()
    learned.learn(CONFIGURED, state)
    assert learned.apply(CONFIGURED) is CONFIGURED
