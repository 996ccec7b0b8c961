"""Webhook settings: whsec_ secrets, the retry schedule, allow-listed networks, and production rules."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from config.errors import ConfigError
from config.settings import load_settings
from config.webhook_settings import DEVELOPMENT_SECRET, decode_secret
from domain.errors import InvalidWebhookUrl
from domain.webhooks.repository import DeliveryAttempt
from domain.webhooks.url_safety import check_webhook_url
from workers.safe_http import make_webhook_client
from workers.webhooks import Outcome, next_delivery_delay

pytestmark = pytest.mark.unit

SECRET_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_B = "whsec_c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdHM="


def test_by_default_a_failing_receiver_gets_eight_attempts_over_about_a_day() -> None:
    """The schedule the README and docs/webhooks.md promise, as the deliverer applies it: at once, 5 s,
    5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then the delivery fails."""
    schedule = load_settings().webhook_retry_schedule
    failed = Outcome(DeliveryAttempt(started_at=datetime(2025, 1, 1, tzinfo=UTC), duration_ms=1))
    delays: list[float] = []
    attempt = 1
    while (delay := next_delivery_delay(schedule, attempt, failed, lambda: 0.0)) is not None:
        delays.append(delay)
        attempt += 1
    assert attempt == 8
    assert delays == [5, 300, 1800, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
    assert sum(delays) / 3600 == pytest.approx(27.6, abs=0.1)


def test_without_secrets_the_development_secret_signs_and_no_private_network_is_trusted() -> None:
    settings = load_settings()
    assert settings.webhook_signing_keys == (decode_secret(DEVELOPMENT_SECRET),)
    for private in ("http://10.0.0.5/hook", "http://127.0.0.1:9/hook", "http://[fd12::1]/hook"):
        with pytest.raises(InvalidWebhookUrl):
            check_webhook_url(private, settings)


def test_the_timeout_setting_bounds_each_delivery_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHERY_WEBHOOK_TIMEOUT_SECONDS", "2.5")
    with make_webhook_client(load_settings().webhook_timeout_seconds) as client:
        assert (client.timeout.connect, client.timeout.read, client.timeout.write) == (2.5, 2.5, 2.5)


def test_lists_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHERY_WEBHOOK_SECRETS", f"{SECRET_A}, {SECRET_B}")
    monkeypatch.setenv("BATCHERY_WEBHOOK_RETRY_SCHEDULE", "0,250ms,2s,1m,1.5h")
    monkeypatch.setenv("BATCHERY_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32 10.20.0.0/16,fd12::/64")
    settings = load_settings()
    assert settings.webhook_signing_keys == (decode_secret(SECRET_A), decode_secret(SECRET_B))
    assert settings.webhook_retry_schedule == (0.0, 0.25, 2.0, 60.0, 5400.0)
    assert settings.webhook_allowed_networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd12::/64"),
    )


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("BATCHERY_WEBHOOK_SECRETS", "not-a-whsec", "whsec_<base64>"),
        ("BATCHERY_WEBHOOK_SECRETS", "whsec_!!!!", "base64"),
        ("BATCHERY_WEBHOOK_SECRETS", "whsec_c2hvcnQ=", "24 to 64 bytes"),
        ("BATCHERY_WEBHOOK_RETRY_SCHEDULE", "0,5 parsecs", "is not a delay"),
        ("BATCHERY_WEBHOOK_RETRY_SCHEDULE", "", "at least one delay"),
        ("BATCHERY_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33", "BATCHERY_WEBHOOK_ALLOWED_NETWORKS"),
        ("BATCHERY_WEBHOOK_TIMEOUT_SECONDS", "0", "BATCHERY_WEBHOOK_TIMEOUT_SECONDS"),
    ],
)
def test_bad_values_stop_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert variable in info.value.message and fragment in info.value.message


def test_a_secret_never_appears_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHERY_WEBHOOK_SECRETS", "whsec_c2VjcmV0LWJ1dC10b28tc2hvcnQ=")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "c2VjcmV0LWJ1dC10b28tc2hvcnQ" not in str(info.value)


@pytest.mark.parametrize("secret", [DEVELOPMENT_SECRET, "whsec_" + "A" * 32])
def test_production_refuses_placeholder_secrets(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environment="production", webhook_secrets=[secret])
    assert "placeholder" in info.value.message
    assert load_settings(environment="development", webhook_secrets=[secret]).webhook_signing_keys


def test_production_without_a_secret_signs_nothing() -> None:
    assert load_settings(environment="production").webhook_signing_keys == ()
    real = load_settings(environment="production", webhook_secrets=[SECRET_A])
    assert real.webhook_signing_keys == (decode_secret(SECRET_A),)
