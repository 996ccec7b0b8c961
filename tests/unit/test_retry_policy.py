"""The retry policy, table-driven: what retries, what fails at once, and how long to wait."""

from __future__ import annotations

import pytest

from workers.retry import RetryPolicy, is_retryable, next_delay
from workers.upstream import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamMalformed,
    UpstreamTimeout,
)

pytestmark = pytest.mark.unit


def http(
    status: int, code: str = "", headers: dict[str, str] | None = None, message: str = ""
) -> UpstreamHTTPError:
    body = {"error": {"message": message or "x", "type": code or "t", "code": code or None}}
    return UpstreamHTTPError(status, headers=headers or {}, body=body, text=message)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (UpstreamConnectionError(), True),
        (UpstreamTimeout(), True),
        (UpstreamMalformed(), True),
        (http(408), True),
        (http(409), True),
        (http(429, "rate_limit_exceeded"), True),
        (http(429, "insufficient_quota"), False),
        (http(500), True),
        (http(502), True),
        (http(503), True),
        (http(504), True),
        (http(400), False),
        (http(401), False),
        (http(403), False),
        (http(404), False),
        (http(422), False),
        (ValueError("not upstream"), False),
    ],
)
def test_what_retries(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


POLICY = RetryPolicy(max_attempts=5, base_seconds=1.0, cap_seconds=8.0, deadline_seconds=100.0)


@pytest.mark.parametrize(
    ("error", "attempt", "elapsed", "rand", "expected"),
    [
        (http(500), 1, 0, 0.0, 0.5),  # half of base at the low end of the jitter
        (http(500), 1, 0, 1.0, 1.0),
        (http(500), 3, 0, 1.0, 4.0),
        (http(500), 6, 0, 1.0, None),  # past max attempts
        (http(500), 4, 0, 1.0, 8.0),
        (http(500), 5, 0, 1.0, None),
        (UpstreamTimeout(), 2, 0, 1.0, 2.0),
        (http(429, headers={"retry-after-ms": "1500"}), 1, 0, 0.0, 1.5),  # the server wins
        (http(429, headers={"retry-after": "7"}), 1, 0, 0.0, 7.0),
        (http(429, message="Please try again in 2.5s."), 1, 0, 0.0, 2.5),
        (http(503, headers={"retry-after": "30", "retry-after-ms": "200"}), 1, 0, 0.0, 0.2),
        (http(500), 2, 99.5, 1.0, None),  # the deadline bounds the wait
        (http(400), 1, 0, 1.0, None),
        (http(429, "insufficient_quota"), 1, 0, 1.0, None),
    ],
)
def test_next_delay(
    error: UpstreamError, attempt: int, elapsed: float, rand: float, expected: float | None
) -> None:
    assert next_delay(POLICY, error, attempt, elapsed, rand=lambda: rand) == expected


def test_backoff_is_capped() -> None:
    assert POLICY.backoff(30, rand=lambda: 1.0) == 8.0
