"""Secrets are removed from text, JSON values and log records (message, arguments, exceptions, extras)."""

from __future__ import annotations

import io
import logging

import pytest

from domain.redaction import MASK, redact, redact_value, remember_secrets
from infra.log_setup import RedactingFilter, install_log_redaction, scrub

pytestmark = pytest.mark.unit

BATCHERY_KEY = "bk_0123456789ab_" + "c" * 40
PROVIDER_KEY = "sk-proj-Abc123_def456-ghi789"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {BATCHERY_KEY}", BATCHERY_KEY),
        (f"{{'authorization': 'Bearer {PROVIDER_KEY}'}}", PROVIDER_KEY),
        ('{"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}', "dXNlcjpwYXNzd29yZA=="),
        (f"calling with key {PROVIDER_KEY} now", PROVIDER_KEY),
        (f"secret is {WEBHOOK_SECRET}.", WEBHOOK_SECRET),
        (f"presented {BATCHERY_KEY}", BATCHERY_KEY),
        ("headers: {'api-key': '0123456789abcdef0123456789abcdef'}", "0123456789abcdef0123456789abcdef"),
        ("password=hunter2hunter2&x=1", "hunter2hunter2"),
        ("redis://:s3cretpw@redis:6379/0", "s3cretpw"),
        ("token: bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
    ],
)
def test_secrets_are_recognised_by_shape(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned and MASK in cleaned


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "job job_01abc succeeded: 12 prompt tokens, max_tokens=16, total_tokens: 20",
        "tier.standard queue has 3 jobs; notebook_abcdefgh is a file",
        "Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit 50000",
    ):
        assert redact(text) == text


def test_remembered_secrets_are_replaced_whatever_their_shape() -> None:
    azure = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
    remember_secrets([azure, "short"])
    assert redact(f"upstream said: key {azure} is wrong") == f"upstream said: key {MASK} is wrong"
    assert redact("short stays") == "short stays"


def test_json_values_are_redacted_deeply() -> None:
    body = {
        "error": {"message": f"bad key {PROVIDER_KEY}", "code": "invalid_api_key", "n": 3},
        "l": [WEBHOOK_SECRET],
    }
    cleaned = redact_value(body)
    assert PROVIDER_KEY not in str(cleaned) and WEBHOOK_SECRET not in str(cleaned)
    assert cleaned["error"]["code"] == "invalid_api_key" and cleaned["error"]["n"] == 3


def _record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.__dict__.update(extra)
    return record


def test_log_records_are_scrubbed_everywhere() -> None:
    try:
        raise RuntimeError(f"upstream refused {PROVIDER_KEY}")
    except RuntimeError as exc:
        record = scrub(
            _record("sending %s to %s", f"Bearer {BATCHERY_KEY}", "x", exc=exc, hook=WEBHOOK_SECRET)
        )
    text = logging.Formatter("%(message)s %(hook)s").format(record)
    for secret in (PROVIDER_KEY, BATCHERY_KEY, WEBHOOK_SECRET):
        assert secret not in text
    assert "sending Bearer [REDACTED] to x" in text and "RuntimeError" in text


def test_installed_factory_redacts_records_from_any_logger() -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("some.library")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("request headers %r", {"authorization": f"Bearer {BATCHERY_KEY}"})
        logger.warning("key %s", PROVIDER_KEY, extra={"detail": WEBHOOK_SECRET})
    finally:
        logger.removeHandler(handler)
    assert BATCHERY_KEY not in stream.getvalue() and PROVIDER_KEY not in stream.getvalue()
    assert stream.getvalue().count(MASK) == 2


def test_filter_for_hand_made_handlers() -> None:
    record = _record("key %s", PROVIDER_KEY)
    assert RedactingFilter().filter(record) is True
    assert PROVIDER_KEY not in record.getMessage()
