"""The retry loop's one decision per attempt, on a fake clock: tenacity's stop and wait agree, the
server's Retry-After wins, the deadline and the last attempt stop it, and a cancel during a backoff
ends it before another call."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tenacity import Retrying, retry_if_exception

from workers.retry import Cancelled, RetryPlan, RetryPolicy, is_retryable
from workers.upstream import UpstreamHTTPError

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def http(status: int, headers: dict[str, str] | None = None) -> UpstreamHTTPError:
    body = {"error": {"message": "x", "type": "t", "code": None}}
    return UpstreamHTTPError(status, headers=headers or {}, body=body, text="")


def run(
    plan: RetryPlan, clock: FakeClock, failures: list[UpstreamHTTPError], call_time: float = 0.0
) -> tuple[int, BaseException | None]:
    """Run a call that raises ``failures`` in turn, then succeeds; answers the calls made and the error."""
    calls = 0

    def call() -> str:
        nonlocal calls
        calls += 1
        clock.now += call_time
        if calls <= len(failures):
            raise failures[calls - 1]
        return "ok"

    retrying = Retrying(
        retry=retry_if_exception(is_retryable), stop=plan.stop, wait=plan.wait, sleep=plan.sleep, reraise=True
    )
    try:
        retrying(call)
    except (UpstreamHTTPError, Cancelled) as error:
        return calls, error
    return calls, None


def plan(
    clock: FakeClock,
    *,
    rand: Callable[[], float],
    first_attempt: int = 1,
    cancelled: Callable[[], bool] = lambda: False,
    **policy: float,
) -> RetryPlan:
    knobs = {"max_attempts": 5, "base_seconds": 1.0, "cap_seconds": 60.0, "deadline_seconds": 100.0, **policy}
    return RetryPlan(
        RetryPolicy(**knobs),  # type: ignore[arg-type]
        first_attempt=first_attempt,
        clock=clock,
        sleep=clock.sleep,
        rand=rand,
        cancelled=cancelled,
    )


def test_each_attempt_draws_its_delay_once_and_waits_exactly_that() -> None:
    clock = FakeClock()
    draws = iter([0.0, 1.0, 0.5])
    drawn: list[float] = []

    def rand() -> float:
        drawn.append(next(draws))
        return drawn[-1]

    calls, error = run(plan(clock, rand=rand), clock, [http(500), http(500), http(500)])
    assert (calls, error) == (4, None)
    assert len(drawn) == 3  # one draw per failed attempt, shared by the stop and the wait
    assert clock.sleeps == [0.5, 2.0, 3.0]  # equal jitter: half to all of 1, 2, 4


def test_the_servers_retry_after_wins_over_the_backoff() -> None:
    clock = FakeClock()
    calls, error = run(plan(clock, rand=lambda: 1.0), clock, [http(429, {"retry-after": "7"})])
    assert (calls, error) == (2, None)
    assert clock.sleeps == [7.0]


def test_a_retry_after_past_the_deadline_fails_now_instead_of_retrying_at_once() -> None:
    clock = FakeClock()
    failure = http(429, {"retry-after": "30"})
    calls, error = run(plan(clock, rand=lambda: 1.0, deadline_seconds=20.0), clock, [failure])
    assert calls == 1 and error is failure
    assert clock.sleeps == []


def test_the_deadline_counts_the_time_the_calls_took() -> None:
    clock = FakeClock()
    failures = [http(503)] * 4
    calls, error = run(plan(clock, rand=lambda: 1.0, deadline_seconds=30.0), clock, failures, call_time=10.0)
    # 10 s call, 1 s wait, 10 s call, 2 s wait, 10 s call: the next 4 s wait would end past 30 s
    assert calls == 3 and error is failures[2]
    assert clock.sleeps == [1.0, 2.0]


def test_the_last_attempt_fails_without_waiting() -> None:
    clock = FakeClock()
    failures = [http(500)] * 5
    # the job was claimed again as its 4th attempt: one retry is left, then the 5th attempt is the last
    calls, error = run(plan(clock, rand=lambda: 1.0, first_attempt=4), clock, failures)
    assert calls == 2 and error is failures[1]
    assert clock.sleeps == [8.0]


def test_a_cancel_during_the_backoff_ends_the_run_before_another_call() -> None:
    clock = FakeClock()
    asked: list[float] = []

    def cancelled() -> bool:
        asked.append(clock.now)
        return clock.now >= 3.0

    calls, error = run(plan(clock, rand=lambda: 1.0, cancelled=cancelled), clock, [http(500)] * 4)
    assert calls == 2 and isinstance(error, Cancelled)
    assert asked == [1.0, 3.0]  # asked after each backoff, and the run stopped at the second
