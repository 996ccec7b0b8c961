"""The simulator's quantized rate limits, on a fake clock."""

from __future__ import annotations

import pytest

from simulator.limit_answers import format_duration, ratelimit_headers, rejection_error
from simulator.ratelimit import Charge, Limits, QuantizedCounter, RateLimiter, Rejection

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, quantum: float = 1.0, count_rejected: bool = False) -> RateLimiter:
    return RateLimiter(quantum=quantum, clock=clock, count_rejected=count_rejected)


def test_a_window_allows_its_share_of_the_minute_and_no_more() -> None:
    clock = FakeClock(100.25)
    rl = limiter(clock)
    limits = Limits(rpm=600)
    assert all(rl.acquire("m", limits, Charge()).admitted for _ in range(10))
    refused = rl.acquire("m", limits, Charge())
    assert refused.rejection is not None
    assert refused.rejection.retry_after == pytest.approx(0.75)
    assert refused.rejection == Rejection("requests", 600, 10, 1, refused.rejection.retry_after)
    clock.now = 101.0
    assert rl.acquire("m", limits, Charge()).admitted


def test_quantum_sets_the_window_length() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock, quantum=6.0)
    limits = Limits(rpm=600)
    assert sum(rl.acquire("m", limits, Charge()).admitted for _ in range(70)) == 60


def test_tokens_are_limited_per_window() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=1000, tpm=60_000)
    assert rl.acquire("m", limits, Charge(tokens=600)).admitted
    decision = rl.acquire("m", limits, Charge(tokens=600))
    assert decision.rejection is not None
    assert decision.rejection.dimension == "tokens"
    assert decision.rejection.requested == 600
    assert decision.rejection.retry_after == pytest.approx(1.0)
    assert rl.acquire("m", limits, Charge(tokens=400)).admitted


def test_a_request_bigger_than_a_window_passes_on_a_fresh_window_and_leaves_debt() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=1000, tpm=6_000)  # 100 tokens per 1 s window
    assert rl.acquire("m", limits, Charge(tokens=250)).admitted
    clock.now = 0.5
    refused = rl.acquire("m", limits, Charge(tokens=10)).rejection
    assert refused is not None
    assert refused.retry_after == pytest.approx(1.5)  # 250 + 10 - 100 = 160 over: two windows
    clock.now = 1.5
    assert not rl.acquire("m", limits, Charge(tokens=10)).admitted
    clock.now = 2.0
    assert rl.acquire("m", limits, Charge(tokens=10)).admitted


def test_a_request_bigger_than_the_minute_never_fits() -> None:
    rl = limiter(FakeClock(0.0))
    refused = rl.acquire("m", Limits(rpm=10, tpm=1000), Charge(tokens=1001)).rejection
    assert refused is not None
    assert refused.dimension == "tokens"
    assert refused.retry_after is None


def test_low_limits_stretch_the_window_to_one_unit() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=3)
    assert rl.acquire("m", limits, Charge()).admitted
    refused = rl.acquire("m", limits, Charge()).rejection
    assert refused is not None
    assert refused.retry_after == pytest.approx(20.0)


@pytest.mark.parametrize(("rpm", "step"), [(50, 0.1), (600, 0.01), (7, 0.25)])
def test_the_long_run_rate_is_the_per_minute_limit(rpm: int, step: float) -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    admitted = 0
    for tick in range(int(600 / step)):
        clock.now = tick * step
        admitted += rl.acquire("m", Limits(rpm=rpm), Charge()).admitted
    assert admitted == pytest.approx(rpm * 10, abs=rpm / 10 + 1)


def test_images_per_minute_count_each_image() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=100, ipm=20)  # window 3 s, one image each
    assert rl.acquire("img", limits, Charge(images=4)).admitted
    refused = rl.acquire("img", limits, Charge(images=1)).rejection
    assert refused is not None
    assert refused.dimension == "images"
    assert refused.retry_after == pytest.approx(12.0)


def test_refusals_take_nothing_unless_counted() -> None:
    clock = FakeClock(0.0)
    free = limiter(clock)
    counted = limiter(clock, count_rejected=True)
    limits = Limits(rpm=600, tpm=6_000)
    for rl in (free, counted):
        assert rl.acquire("m", limits, Charge(tokens=100)).admitted
        assert not rl.acquire("m", limits, Charge(tokens=100)).admitted
    assert free.acquire("m", limits, Charge()).states[0].remaining == 598
    assert counted.acquire("m", limits, Charge()).states[0].remaining == 597


def test_the_longest_wait_is_reported() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=60, tpm=6000)  # 1 request and 100 tokens per 1 s window
    assert rl.acquire("m", limits, Charge(tokens=150)).admitted
    refused = rl.acquire("m", limits, Charge(tokens=60)).rejection  # requests: 1 s, tokens: 2 s
    assert refused is not None
    assert refused.dimension == "tokens"
    assert refused.retry_after == pytest.approx(2.0)


def test_states_show_the_per_minute_view() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=600, tpm=60_000)
    for _ in range(9):
        rl.acquire("m", limits, Charge(tokens=100))
    states = {state.dimension: state for state in rl.acquire("m", limits, Charge(tokens=100)).states}
    assert (states["requests"].limit, states["requests"].remaining) == (600, 590)
    assert states["requests"].reset_seconds == pytest.approx(1.0)
    assert states["tokens"].remaining == 59_000
    assert states["tokens"].reset_seconds == pytest.approx(1.0)
    clock.now = 0.5
    refused = rl.acquire("m", limits, Charge(tokens=0))
    assert not refused.admitted
    assert refused.states[0].remaining == 595
    clock.now = 1.5
    assert rl.acquire("m", limits, Charge(tokens=0)).states[0].remaining == 599


def test_models_sharing_a_budget_share_counters() -> None:
    rl = limiter(FakeClock(0.0))
    limits = Limits(rpm=120)
    assert rl.acquire("shared", limits, Charge()).admitted
    assert rl.acquire("shared", limits, Charge()).admitted
    assert not rl.acquire("shared", limits, Charge()).admitted
    assert rl.acquire("other", limits, Charge()).admitted


def test_new_limits_start_a_fresh_bucket_and_reset_forgets_all() -> None:
    rl = limiter(FakeClock(0.0))
    assert rl.acquire("m", Limits(rpm=60), Charge()).admitted
    assert not rl.acquire("m", Limits(rpm=60), Charge()).admitted
    assert rl.acquire("m", Limits(rpm=120), Charge()).admitted
    rl.reset()
    assert rl.acquire("m", Limits(rpm=60), Charge()).admitted


def test_counter_window_and_allowance() -> None:
    counter = QuantizedCounter(limit=30_000, quantum=1.0, now=0.0)
    assert (counter.window, counter.allowance) == (1.0, 500.0)
    slow = QuantizedCounter(limit=20, quantum=1.0, now=0.0)
    assert (slow.window, slow.allowance) == (3.0, 1.0)


def test_scaling_limits() -> None:
    assert Limits(5000, 2_000_000, 0).scaled(0.8) == Limits(4000, 1_600_000, 0)
    assert Limits(1, 3, 0).scaled(0.1) == Limits(1, 1, 0)
    assert Limits().unlimited
    with pytest.raises(ValueError, match="quantum"):
        RateLimiter(quantum=0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.0004, "1ms"),
        (0.02, "20ms"),
        (1, "1s"),
        (1.1456, "1.146s"),
        (59.9999, "1m0s"),
        (90.5, "1m30.5s"),
        (360, "6m0s"),
        (3723, "1h2m3s"),
    ],
)
def test_durations_are_written_like_hosted_apis(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_and_429_body() -> None:
    clock = FakeClock(0.0)
    rl = limiter(clock)
    limits = Limits(rpm=60, tpm=50_000)
    rl.acquire("m", limits, Charge(tokens=800))
    decision = rl.acquire("m", limits, Charge(tokens=100))
    headers = ratelimit_headers(decision.states)
    assert headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "50000",
        "x-ratelimit-remaining-tokens": "49200",
        "x-ratelimit-reset-tokens": "960ms",
    }
    assert decision.rejection is not None
    error = rejection_error("gpt-4o-mini", decision.rejection)
    assert error.status == 429
    assert error.body()["error"] == {
        "message": "Rate limit reached for gpt-4o-mini in organization org-sim on requests per min (RPM): "
        "Limit 60, Used 1, Requested 1. Please try again in 1s. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert error.headers == {"retry-after": "1", "retry-after-ms": "1000"}


def test_too_large_429_has_no_retry_headers() -> None:
    error = rejection_error("gpt-4o", Rejection("tokens", 1000, 0, 5000, None))
    assert error.body()["error"]["message"].startswith(
        "Request too large for gpt-4o in organization org-sim on tokens per min (TPM): "
        "Limit 1000, Requested 5000."
    )
    assert error.body()["error"]["type"] == "tokens"
    assert error.headers == {}


def test_bucket_quantization_drains_continuously() -> None:
    clock = FakeClock(100.25)
    rl = RateLimiter(quantum=1.0, clock=clock, smooth=True)
    limits = Limits(rpm=600)
    assert all(rl.acquire("m", limits, Charge()).admitted for _ in range(10))
    refused = rl.acquire("m", limits, Charge())
    assert refused.rejection is not None
    assert refused.rejection.retry_after == pytest.approx(0.1)  # one request's refill, not the window's end
    clock.now = 100.35
    assert rl.acquire("m", limits, Charge()).admitted
    assert not rl.acquire("m", limits, Charge()).admitted


def test_bucket_quantization_keeps_the_long_run_rate() -> None:
    clock = FakeClock(0.0)
    rl = RateLimiter(quantum=1.0, clock=clock, smooth=True)
    limits = Limits(rpm=600)
    admitted = 0
    for step in range(3000):
        clock.now = step * 0.02
        admitted += rl.acquire("m", limits, Charge()).admitted
    assert 600 <= admitted <= 611  # 60 s at 10/s, plus the one-quantum burst at the start
