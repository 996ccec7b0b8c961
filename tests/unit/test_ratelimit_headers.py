"""Reading rate-limit headers, Retry-After and 429 bodies: table-driven, malformed input never raises."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from workers.ratelimit_headers import RateLimitState, parse_duration, parse_rate_limit_headers, retry_delay

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1m30.5s", 90.5),
        ("0.5s", 0.5),
        ("1.146s", 1.146),
        ("1h2m3s", 3723.0),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        (".5s", 0.5),
        (" 2s ", 2.0),
        ("12", 12.0),
        ("0.25", 0.25),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", " ", "s", "abc", "-1s", "1x", "1s2", "1..2s", "nan", "inf", "1e3", "1 s", "m1s", "1,5s"]
)
def test_parse_duration_refuses_malformed(text: str) -> None:
    assert parse_duration(text) is None


def test_parse_rate_limit_headers_reads_every_field_in_any_case() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "5000",
        "x-ratelimit-limit-tokens": "2000000",
        "x-ratelimit-remaining-requests": "4999",
        "x-ratelimit-remaining-tokens": "1999010",
        "x-ratelimit-reset-requests": "12ms",
        "x-ratelimit-reset-tokens": "29ms",
        "content-type": "application/json",
    }
    state = parse_rate_limit_headers(headers)
    assert (state.limit_requests, state.limit_tokens) == (5000, 2_000_000)
    assert (state.remaining_requests, state.remaining_tokens) == (4999, 1_999_010)
    assert (state.reset_requests, state.reset_tokens) == pytest.approx((0.012, 0.029))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateLimitState()),
        ({"x-ratelimit-remaining-tokens": "lots"}, RateLimitState()),
        ({"x-ratelimit-remaining-tokens": "-3"}, RateLimitState()),
        ({"x-ratelimit-remaining-tokens": "12.0"}, RateLimitState(remaining_tokens=12)),
        ({"x-ratelimit-remaining-requests": "٣"}, RateLimitState()),
        ({"x-ratelimit-reset-tokens": "soon"}, RateLimitState()),
        ({"x-ratelimit-reset-tokens": "6m0s"}, RateLimitState(reset_tokens=360.0)),
        ({"x-ratelimit-limit-requests": ""}, RateLimitState()),
    ],
)
def test_parse_rate_limit_headers_ignores_malformed_values(
    headers: dict[str, str], expected: RateLimitState
) -> None:
    assert parse_rate_limit_headers(headers) == expected


def test_rate_limit_state_is_empty() -> None:
    assert RateLimitState().is_empty
    assert not RateLimitState(remaining_tokens=0).is_empty


OPENAI_429 = (
    '{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-x on tokens per min '
    "(TPM): Limit 50000, Used 47949, Requested 3006. Please try again in 1.146s. Visit "
    'https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,'
    '"code":"rate_limit_exceeded"}}'
)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({}, None, None),
        ({}, "", None),
        ({}, '{"error":{"message":"You exceeded your current quota"}}', None),
        ({"retry-after-ms": "250"}, None, 0.25),
        ({"Retry-After-Ms": "1500.5"}, None, 1.5005),
        ({"retry-after-ms": "250", "retry-after": "7"}, OPENAI_429, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "7"}, None, 7.0),
        ({"retry-after-ms": "-5", "retry-after": "7"}, None, 7.0),
        ({"retry-after": "2"}, OPENAI_429, 2.0),
        ({"Retry-After": "1.5"}, None, 1.5),
        ({"retry-after": "Sat, 01 Mar 2025 12:00:30 GMT"}, None, 30.0),
        ({"retry-after": "Sat, 01 Mar 2025 11:59:00 GMT"}, None, 0.0),
        ({"retry-after": "Sat, 01 Mar 2025 12:00:10 -0000"}, None, 10.0),
        ({"retry-after": "tomorrow"}, OPENAI_429, 1.146),
        ({"retry-after": "-1"}, None, None),
        ({"retry-after": "nan"}, None, None),
        ({}, OPENAI_429, 1.146),
        ({}, "Rate limit reached. Please try again in 20ms.", 0.02),
        ({}, "Please try again in 6m0s. Visit the docs.", 360.0),
        ({}, "please TRY AGAIN IN 1m30.5s", 90.5),
        ({}, "Try again in 2 seconds.", 2.0),
        ({}, "try again in 1 minute", 60.0),
        ({}, "try again in 300 milliseconds", 0.3),
        ({}, "try again in a moment", None),
        ({}, "try again in 5x", None),
    ],
)
def test_retry_delay(headers: dict[str, str], body: str | None, expected: float | None) -> None:
    delay = retry_delay(headers, body, now=NOW)
    if expected is None:
        assert delay is None
    else:
        assert delay == pytest.approx(expected)


def test_retry_delay_with_a_date_uses_the_current_time_by_default() -> None:
    later = format_datetime(datetime.now(UTC).replace(microsecond=0), usegmt=True)
    delay = retry_delay({"retry-after": later})
    assert delay is not None
    assert 0.0 <= delay <= 1.0
