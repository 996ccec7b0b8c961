"""The limiter's bucket math and the in-memory limiter, on an injected clock (no sleeps).

``LimiterBehaviour`` is the behaviour every limiter must show. It runs here against ``MemoryLimiter`` and
in ``tests/integration/test_limiter_redis.py`` against ``RedisLimiter`` on a real Redis. It is written so
that real time passing between two calls (at most ``Harness.slack`` seconds) can only make a bucket
fuller, never break an assertion.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config.tiers import ModelLimits
from domain.storage.redis_keys import RedisKeys
from domain.tokens.estimates import Cost
from workers.buckets import Budget, lower, observe_ceilings, refill, settle_levels, take, wait_seconds
from workers.limiter import Limiter, LimiterTimeout, MemoryLimiter
from workers.ratelimit_headers import RateLimitState

pytestmark = pytest.mark.unit

# 2 requests a second (capacity 2) and 10 tokens a second (capacity 10).
BUDGET = Budget("standard:gpt-test", rpm=120, tpm=600, ipm=0, burst_seconds=1.0)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A limiter plus a way to let time pass: a fake clock, or real sleep for a shared store."""

    def __init__(self, limiter: Limiter, advance: Callable[[float], None], slack: float) -> None:
        self.limiter = limiter
        self.advance = advance
        self.slack = slack

    def level(self, budget: Budget, dimension: str) -> float:
        return self.limiter.snapshot(budget)[dimension]

    def assert_level(self, budget: Budget, dimension: str, expected: float) -> None:
        """The level is ``expected``, plus at most what ``slack`` seconds of real time refilled."""
        rate = dict(zip(("requests", "tokens", "images"), budget.rates, strict=True))[dimension]
        actual = self.level(budget, dimension)
        assert expected - 1e-6 <= actual <= expected + rate * self.slack + 1e-6, (dimension, actual)


class LimiterBehaviour:
    """What every limiter does. Subclasses provide the ``harness`` fixture."""

    def test_fresh_bucket_grants_its_burst_then_answers_the_wait(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0
        wait = harness.limiter.acquire(BUDGET, Cost())
        assert 0.0 < wait <= 0.5

    def test_bucket_refills_after_the_answered_wait(self, harness: Harness) -> None:
        for _ in range(2):
            harness.limiter.acquire(BUDGET, Cost())
        wait = harness.limiter.acquire(BUDGET, Cost())
        assert wait > 0
        harness.advance(wait + 0.01)
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0

    def test_idle_time_fills_no_further_than_the_burst(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0
        harness.advance(0.6)
        harness.assert_level(BUDGET, "requests", 2.0)
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0
        assert harness.limiter.acquire(BUDGET, Cost()) > 0

    def test_cost_is_taken_all_or_none(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost(tokens=8)) == 0.0
        wait = harness.limiter.acquire(BUDGET, Cost(tokens=8))
        assert 0.0 < wait <= 0.6
        harness.assert_level(BUDGET, "requests", 1.0)
        assert harness.limiter.acquire(BUDGET, Cost(tokens=1)) == 0.0
        harness.assert_level(BUDGET, "requests", 0.0)
        harness.assert_level(BUDGET, "tokens", 1.0)

    def test_oversize_cost_passes_when_full_and_leaves_debt(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost(tokens=18)) == 0.0
        harness.assert_level(BUDGET, "tokens", -8.0)
        wait = harness.limiter.acquire(BUDGET, Cost(tokens=1))
        assert 0.9 - harness.slack <= wait <= 0.9

    def test_one_admission_leaves_at_most_one_burst_of_debt(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost(tokens=2_000_000_000)) == 0.0
        harness.assert_level(BUDGET, "tokens", -10.0)
        wait = harness.limiter.acquire(BUDGET, Cost(tokens=1))
        assert 1.1 - harness.slack <= wait <= 1.1
        assert harness.limiter.acquire(BUDGET, Cost(tokens=2**63)) > 0

    def test_a_charge_at_settle_leaves_at_most_one_burst_of_debt(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost(tokens=5)) == 0.0
        harness.limiter.settle(BUDGET, Cost(tokens=5), Cost(tokens=10**15))
        harness.assert_level(BUDGET, "tokens", -10.0)

    def test_oversize_cost_waits_at_most_one_refill(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost(tokens=4)) == 0.0
        wait = harness.limiter.acquire(BUDGET, Cost(tokens=1000))
        assert 0.0 < wait <= 0.4
        harness.advance(wait + 0.01)
        assert harness.limiter.acquire(BUDGET, Cost(tokens=1000)) == 0.0

    def test_settle_refunds_up_to_capacity_and_charges_into_debt(self, harness: Harness) -> None:
        assert harness.limiter.acquire(BUDGET, Cost(tokens=8)) == 0.0
        harness.limiter.settle(BUDGET, Cost(tokens=8), Cost(tokens=3))
        harness.assert_level(BUDGET, "tokens", 7.0)
        harness.limiter.settle(BUDGET, Cost(tokens=8), Cost(tokens=0))
        harness.assert_level(BUDGET, "tokens", 10.0)
        harness.limiter.settle(BUDGET, Cost(tokens=1), Cost(tokens=21))
        harness.assert_level(BUDGET, "tokens", -10.0)
        assert harness.limiter.acquire(BUDGET, Cost(tokens=1)) > 0.5

    def test_settle_refunds_a_request_that_was_not_made(self, harness: Harness) -> None:
        for _ in range(2):
            harness.limiter.acquire(BUDGET, Cost())
        harness.limiter.settle(BUDGET, Cost(requests=1), Cost(requests=0))
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0

    def test_pause_holds_every_acquire_and_keeps_the_longer_pause(self, harness: Harness) -> None:
        harness.limiter.pause(BUDGET, 0.5)
        assert 0.0 < harness.limiter.acquire(BUDGET, Cost()) <= 0.5
        harness.limiter.pause(BUDGET, 0.1)
        wait = harness.limiter.acquire(BUDGET, Cost())
        assert 0.5 - harness.slack <= wait <= 0.5
        assert 0.0 < harness.limiter.snapshot(BUDGET)["paused_seconds"] <= 0.5
        harness.advance(wait + 0.01)
        # the bucket refilled from empty during the pause: one request's refill later, one fits
        refill_wait = harness.limiter.acquire(BUDGET, Cost())
        assert 0.0 < refill_wait <= 0.5
        harness.advance(refill_wait + 0.01)
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0

    def test_budget_does_not_pile_up_during_a_pause(self, harness: Harness) -> None:
        harness.limiter.pause(BUDGET, 2.0)
        harness.advance(2.0 + 0.6)  # 0.6 s of refill after the pause: one request at 2 per second
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0
        assert harness.limiter.acquire(BUDGET, Cost()) > 0.0

    def test_pause_of_zero_or_less_does_nothing(self, harness: Harness) -> None:
        harness.limiter.pause(BUDGET, 0.0)
        harness.limiter.pause(BUDGET, -3.0)
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0

    def test_observe_lowers_the_level_and_never_raises_it(self, harness: Harness) -> None:
        harness.limiter.observe(BUDGET, RateLimitState(remaining_tokens=3))
        harness.assert_level(BUDGET, "tokens", 3.0)
        harness.limiter.observe(BUDGET, RateLimitState(remaining_tokens=100_000, remaining_requests=500))
        harness.assert_level(BUDGET, "tokens", 3.0)
        harness.assert_level(BUDGET, "requests", 2.0)

    def test_observe_exhausted_upstream_makes_the_next_grant_wait(self, harness: Harness) -> None:
        state = RateLimitState(limit_requests=120, remaining_requests=0, reset_requests=60.0)
        harness.limiter.observe(BUDGET, state)
        assert 0.0 < harness.limiter.acquire(BUDGET, Cost()) <= 0.5

    def test_observe_slower_upstream_drains_until_its_reset(self, harness: Harness) -> None:
        # The upstream refills 300 tokens in 60 s (5/s), half the bucket's 10/s: over the window the
        # bucket may hand out only what the upstream will have, so it owes 300 tokens (30 s).
        state = RateLimitState(limit_tokens=300, remaining_tokens=0, reset_tokens=60.0)
        harness.limiter.observe(BUDGET, state)
        assert 30.0 - harness.slack <= harness.limiter.acquire(BUDGET, Cost(tokens=1)) <= 30.1

    def test_unlimited_dimensions_are_not_counted(self, harness: Harness) -> None:
        budget = Budget("standard:embed", rpm=120)
        assert harness.limiter.acquire(budget, Cost(tokens=10**9, images=50)) == 0.0
        harness.limiter.settle(budget, Cost(tokens=5), Cost(tokens=10**9))
        assert harness.limiter.acquire(budget, Cost(tokens=10**9)) == 0.0
        assert harness.limiter.snapshot(budget)["tokens_capacity"] == 0.0

    def test_budgets_are_independent(self, harness: Harness) -> None:
        other = Budget("shared-mini", rpm=60)
        assert harness.limiter.acquire(other, Cost()) == 0.0
        assert harness.limiter.acquire(other, Cost()) > 0
        assert harness.limiter.acquire(BUDGET, Cost()) == 0.0

    def test_snapshot_of_a_fresh_budget_is_full(self, harness: Harness) -> None:
        snap = harness.limiter.snapshot(BUDGET)
        assert snap == {
            "requests": 2.0,
            "tokens": 10.0,
            "images": 0.0,
            "requests_capacity": 2.0,
            "tokens_capacity": 10.0,
            "images_capacity": 0.0,
            "paused_seconds": 0.0,
        }

    def test_wait_and_acquire_sleeps_the_answered_wait(self, harness: Harness) -> None:
        for _ in range(2):
            harness.limiter.acquire(BUDGET, Cost())
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            harness.advance(seconds)

        waited = harness.limiter.wait_and_acquire(BUDGET, Cost(), max_wait=5.0, sleep=sleep)
        assert waited == pytest.approx(sum(slept))
        assert 0.0 < waited <= 0.5 + 0.02

    def test_wait_and_acquire_gives_up_past_max_wait(self, harness: Harness) -> None:
        harness.limiter.pause(BUDGET, 30.0)
        with pytest.raises(LimiterTimeout) as caught:
            harness.limiter.wait_and_acquire(BUDGET, Cost(), max_wait=1.0, sleep=harness.advance)
        assert caught.value.budget == BUDGET.name
        assert caught.value.waited == 0.0
        assert caught.value.wait > 1.0


class TestMemoryLimiter(LimiterBehaviour):
    @pytest.fixture
    def harness(self) -> Harness:
        clock = FakeClock()
        return Harness(MemoryLimiter(clock), clock.advance, slack=0.0)


def test_refill_is_continuous_and_capped() -> None:
    assert refill((0.0, 0.0, 0.0), BUDGET, 0.25) == pytest.approx((0.5, 2.5, 0.0))
    assert refill((-4.0, 1.0, 0.0), BUDGET, 100.0) == (2.0, 10.0, 0.0)
    assert refill((1.0, 1.0, 0.0), BUDGET, -5.0) == (1.0, 1.0, 0.0)


@pytest.mark.parametrize(
    ("levels", "cost", "expected"),
    [
        ((2.0, 10.0, 0.0), (1.0, 10.0, 0.0), 0.0),
        ((0.5, 10.0, 0.0), (1.0, 0.0, 0.0), 0.25),
        ((2.0, 4.0, 0.0), (1.0, 8.0, 0.0), 0.4),
        ((0.0, 0.0, 0.0), (1.0, 8.0, 0.0), 0.8),
        ((2.0, 10.0, 0.0), (1.0, 500.0, 0.0), 0.0),
        ((2.0, 9.0, 0.0), (1.0, 500.0, 0.0), 0.1),
        ((2.0, -15.0, 0.0), (1.0, 1.0, 0.0), 1.6),
        ((2.0, 10.0, 0.0), (0.0, 0.0, 99.0), 0.0),
        ((2.0, 9.99999, 0.0), (1.0, 10.0, 0.0), 0.001),
    ],
)
def test_wait_seconds(
    levels: tuple[float, float, float], cost: tuple[float, float, float], expected: float
) -> None:
    assert wait_seconds(levels, BUDGET, cost) == pytest.approx(expected)


def test_take_settle_and_lower_touch_only_limited_dimensions() -> None:
    assert take((2.0, 10.0, 0.0), BUDGET, (1.0, 18.0, 3.0)) == (1.0, -8.0, 0.0)
    assert take((2.0, 10.0, 0.0), BUDGET, (1.0, 25.0, 3.0)) == (1.0, -10.0, 0.0)
    assert take((2.0, -30.0, 0.0), BUDGET, (1.0, 5.0, 3.0)) == (1.0, -30.0, 0.0)  # a pause's drain stays
    assert settle_levels((1.0, 2.0, 0.0), BUDGET, (-5.0, -3.0, 7.0)) == (2.0, 5.0, 0.0)
    assert settle_levels((1.0, 2.0, 0.0), BUDGET, (0.0, 11.0, 0.0)) == (1.0, -9.0, 0.0)
    assert settle_levels((1.0, 2.0, 0.0), BUDGET, (0.0, 30.0, 0.0)) == (1.0, -10.0, 0.0)
    assert lower((2.0, 10.0, 0.0), BUDGET, (5.0, 4.0, -1.0)) == (2.0, 4.0, 0.0)
    assert lower((2.0, 10.0, 0.0), BUDGET, (None, None, None)) == (2.0, 10.0, 0.0)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (RateLimitState(), (None, None, None)),
        (RateLimitState(remaining_requests=4, remaining_tokens=7), (4.0, 7.0, None)),
        # The upstream refills at the bucket's own rate: what it has now is the ceiling.
        (RateLimitState(limit_tokens=600, remaining_tokens=0, reset_tokens=60.0), (None, 0.0, None)),
        # The upstream refills faster than the bucket: only what it has now matters.
        (RateLimitState(limit_tokens=6000, remaining_tokens=50, reset_tokens=1.0), (None, 50.0, None)),
        # The upstream refills at 5/s against the bucket's 10/s: the bucket owes the difference.
        (RateLimitState(limit_tokens=300, remaining_tokens=0, reset_tokens=60.0), (None, -300.0, None)),
        (RateLimitState(limit_tokens=300, remaining_tokens=0, reset_tokens=0.0), (None, 0.0, None)),
    ],
)
def test_observe_ceilings(state: RateLimitState, expected: tuple[float | None, ...]) -> None:
    assert observe_ceilings(BUDGET, state) == pytest.approx(expected)


def test_observe_ceilings_skip_unlimited_tokens() -> None:
    budget = Budget("t:embed", rpm=60)
    assert observe_ceilings(budget, RateLimitState(remaining_tokens=0)) == (None, None, None)


def test_budget_for_model_uses_the_shared_budget_name() -> None:
    own = Budget.for_model("standard", "gpt-4o-mini", ModelLimits(rpm=5000, tpm=2_000_000), 1.0)
    shared = Budget.for_model("standard", "gpt-4o-mini", ModelLimits(rpm=60, budget="mini"), 2.0)
    assert own == Budget("standard:gpt-4o-mini", 5000, 2_000_000, 0, 1.0)
    assert shared.name == "mini"
    assert shared.capacities == (2.0, 0.0, 0.0)


def test_capacity_is_at_least_one_request() -> None:
    assert Budget("t:slow", rpm=6, ipm=5).capacities == pytest.approx((1.0, 0.0, 5 / 60))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "rpm": 1},
        {"name": "b", "rpm": 0},
        {"name": "b", "rpm": 1, "tpm": -1},
        {"name": "b", "rpm": 1, "burst_seconds": 0.0},
        {"name": "b", "rpm": 1, "burst_seconds": float("nan")},
    ],
)
def test_budget_refuses_bad_limits(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"budget|rpm|burst"):
        Budget(**kwargs)  # type: ignore[arg-type]


def test_negative_cost_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        MemoryLimiter(FakeClock()).acquire(BUDGET, Cost(tokens=-1))


def test_memory_limiter_keeps_the_long_run_rate() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    granted = 0
    for _ in range(10_000):
        wait = limiter.acquire(BUDGET, Cost(tokens=3))
        if wait == 0:
            granted += 1
        clock.advance(0.01)
    elapsed = 10_000 * 0.01
    assert granted <= 2 + elapsed * 2
    assert granted >= elapsed * 2 * 0.95


def test_redis_keys_share_a_hash_tag_and_prefix() -> None:
    keys = RedisKeys("bq-test")
    assert keys.limiter_bucket("standard:gpt") == "bq-test:limiter:{standard:gpt}:bucket"
    assert keys.limiter_pause("standard:gpt") == "bq-test:limiter:{standard:gpt}:pause"
    assert keys.limiter_pattern() == "bq-test:limiter:*"
    assert RedisKeys().prefix == "batchery"
    with pytest.raises(ValueError, match="prefix"):
        RedisKeys("bad prefix")
