"""The outbound-URL guard, with a stub resolver (no DNS): what is refused, why, and what passes."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from config.settings import load_settings
from domain.errors import InvalidWebhookUrl
from domain.webhooks.url_safety import UnsafeUrl, check_url, check_webhook_url, refusal_reason, unmap

pytestmark = pytest.mark.unit

PUBLIC = "93.184.216.34"


def resolver(answers: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in answers:
            raise OSError("no such name")
        return answers[host]

    return resolve


STUB = resolver(
    {
        "localhost": ["127.0.0.1", "::1"],
        "127.1": ["127.0.0.1"],
        "2130706433": ["127.0.0.1"],
        "0x7f000001": ["127.0.0.1"],
        "example.com": [PUBLIC],
        "mixed.example": [PUBLIC, "10.1.2.3"],
        "metadata.example": ["169.254.169.254"],
    }
)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://localhost/hook", "not a public address"),
        ("http://127.1/hook", "not a public address"),
        ("http://2130706433/hook", "not a public address"),
        ("http://0x7f000001/hook", "not a public address"),
        ("http://0.0.0.0/hook", "not a public address"),
        ("http://[::1]/hook", "not a public address"),
        ("http://[::ffff:127.0.0.1]/hook", "not a public address"),
        ("http://169.254.169.254/latest/meta-data", "not a public address"),
        ("http://100.100.100.200/", "not a public address"),
        ("http://10.0.0.1/", "not a public address"),
        ("http://172.16.0.1/", "not a public address"),
        ("http://172.31.255.254/", "not a public address"),
        ("http://192.168.1.1/", "not a public address"),
        ("http://[fd00::1]/", "not a public address"),
        ("http://[64:ff9b::7f00:1]/", "NAT64"),
        ("http://[2002:7f00:1::]/", "6to4"),
        ("http://224.0.0.1/", "multicast"),
        ("http://mixed.example/", "10.1.2.3"),
        ("http://metadata.example/", "169.254.169.254"),
        ("http://nowhere.example/", "does not resolve"),
        ("http://user:pass@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("ftp://example.com/", "scheme"),
        ("example.com/hook", "scheme"),
        ("http:///hook", "no host"),
        ("http://[fe80::1%25eth0]/", "characters"),
        ("http://example.com:-1/", "port must be between 1 and 65535"),
        ("http://example.com:0/", "port must be between 1 and 65535"),
        ("https://example.com:99999/", "port must be between 1 and 65535"),
    ],
)
def test_refused_with_the_reason(url: str, fragment: str) -> None:
    with pytest.raises(UnsafeUrl) as info:
        check_url(url, resolver=STUB)
    assert fragment in info.value.message


def test_a_public_name_passes_and_names_the_address_to_connect_to() -> None:
    checked = check_url("https://example.com:8443/hooks?x=1", resolver=STUB)
    assert checked.address == ipaddress.ip_address(PUBLIC)
    assert checked.host == "example.com" and checked.port == 8443
    assert checked.host_header == "example.com:8443"
    assert check_url("https://example.com/", resolver=STUB).host_header == "example.com"


def test_the_name_is_resolved_once() -> None:
    calls: list[str] = []

    def counting(host: str, port: int) -> list[str]:
        calls.append(host)
        return [PUBLIC]

    check_url("http://example.com/", resolver=counting)
    assert calls == ["example.com"]


def test_allow_listed_networks_pass() -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.20.0.0/16")]
    assert check_url("http://127.0.0.1:9000/", allowed_networks=allowed).address.is_loopback
    assert check_url("http://[::ffff:127.0.0.1]/", allowed_networks=allowed)
    assert check_url("http://10.20.3.4/", allowed_networks=allowed)
    with pytest.raises(UnsafeUrl):
        check_url("http://127.0.0.2/", allowed_networks=allowed)
    with pytest.raises(UnsafeUrl):
        check_url("http://localhost/", allowed_networks=allowed, resolver=STUB)  # ::1 is not allowed


def test_ipv4_mapped_ipv6_is_judged_as_ipv4() -> None:
    mapped = ipaddress.ip_address("::ffff:8.8.8.8")
    assert unmap(mapped) == ipaddress.ip_address("8.8.8.8")
    assert refusal_reason(mapped) is None
    assert refusal_reason(ipaddress.ip_address("::ffff:10.0.0.1")) is not None


def test_structural_refusals_are_permanent_and_resolution_ones_are_not() -> None:
    with pytest.raises(UnsafeUrl) as bad_scheme:
        check_url("ftp://example.com/", resolver=STUB)
    with pytest.raises(UnsafeUrl) as private_name:
        check_url("http://mixed.example/", resolver=STUB)
    assert bad_scheme.value.permanent and not private_name.value.permanent


def test_submission_check_names_the_reason_and_the_param() -> None:
    settings = load_settings()
    with pytest.raises(InvalidWebhookUrl) as info:
        check_webhook_url("http://10.0.0.1/hook", settings, resolver=STUB)
    assert info.value.code == "invalid_webhook_url" and info.value.param == "webhook_url"
    assert "10.0.0.1 is not a public address" in info.value.message
    assert check_webhook_url("https://example.com/hook", settings, resolver=STUB).host == "example.com"


def test_without_a_signing_secret_in_production_webhooks_are_refused() -> None:
    with pytest.raises(InvalidWebhookUrl) as info:
        check_webhook_url("https://example.com/", load_settings(environment="production"), resolver=STUB)
    assert "not configured" in info.value.message
