"""API key shapes, scopes, principals, expiry parsing and input limits: pure logic."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from cli.keys import KeysError, parse_expiry
from config.errors import ConfigError
from config.settings import load_settings
from domain.errors import InvalidRequest, LimitExceeded
from domain.jobs.input_limits import InputLimits, check_job, check_jsonl_line
from domain.tenancy import api_keys
from domain.tenancy.api_keys import ALL_SCOPES, DEFAULT_SCOPES, Principal, Scope
from tests.factories import chat_request, vision_request

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_key_ids_and_hashes() -> None:
    key = "bk_" + "a" * 12 + "_" + "b" * 40
    assert api_keys.key_id_of(key) == "a" * 12
    for bad in (
        "",
        "bk_short_x",
        "sk-" + "a" * 40,
        key + "x",
        key.upper(),
        "bk_" + "a" * 12 + "-" + "b" * 40,
    ):
        assert api_keys.key_id_of(bad) is None, bad
    assert re.fullmatch(r"[0-9a-f]{64}", api_keys.hash_key(key))
    assert api_keys.hash_key(key) != api_keys.hash_key(key[:-1] + ("c" if key[-1] != "c" else "d"))


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["jobs:read"], {"jobs:read"}),
        (["jobs:read,jobs:write"], {"jobs:read", "jobs:write"}),
        (["jobs:read batches:read", "admin"], {"jobs:read", "batches:read", "admin"}),
        (["all"], set(ALL_SCOPES)),
    ],
)
def test_parse_scopes(words: list[str], expected: set[str]) -> None:
    assert api_keys.parse_scopes(words) == expected


@pytest.mark.parametrize("words", [["jobs:delete"], [""], ["read"]])
def test_unknown_or_no_scopes_are_refused(words: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        api_keys.parse_scopes(words)
    assert caught.value.param == "scopes"


def test_principal_scopes_and_admin() -> None:
    reader = Principal(tenant_id="acme", scopes=frozenset({"jobs:read"}))
    assert reader.allows("jobs:read") and not reader.allows("jobs:write")
    admin = Principal(tenant_id="acme", scopes=frozenset({"admin"}))
    assert all(admin.allows(scope) for scope in Scope)
    assert Scope.admin not in DEFAULT_SCOPES


@pytest.mark.parametrize("name", ["acme", "a", "team-7.prod_eu", "A" * 64])
def test_valid_tenant_names(name: str) -> None:
    assert api_keys.validate_tenant(name) == name


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "A" * 65, "ünï"])
def test_invalid_tenant_names(name: str) -> None:
    with pytest.raises(InvalidRequest):
        api_keys.validate_tenant(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("never", None),
        ("90m", NOW + timedelta(minutes=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("30d", NOW + timedelta(days=30)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T08:30:00Z", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
        ("2026-03-01T08:30:00+02:00", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_parse_expiry(text: str | None, expected: datetime | None) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "30", "5y", "-1d"])
def test_bad_expiry(text: str) -> None:
    with pytest.raises(KeysError):
        parse_expiry(text, NOW)


def test_auth_can_be_disabled_but_never_in_production() -> None:
    assert load_settings(auth_disabled=True).auth_disabled
    with pytest.raises(ConfigError, match="BATCHERY_AUTH_DISABLED"):
        load_settings(auth_disabled=True, environment="production")


LIMITS = InputLimits(max_messages=3, max_metadata_bytes=40, max_url_length=80, max_jsonl_line_bytes=100)


def _code(call: object) -> str:
    assert callable(call)
    with pytest.raises(LimitExceeded) as caught:
        call()
    return caught.value.code


def test_input_limits_name_the_limit() -> None:
    many = chat_request()
    many["messages"] = [{"role": "user", "content": "hi"}] * 4
    assert _code(lambda: check_job(LIMITS, many)) == "too_many_messages"
    items = {"model": "o3", "input": [{"role": "user", "content": "hi"}] * 4}
    assert _code(lambda: check_job(LIMITS, items)) == "too_many_messages"
    check_job(LIMITS, {"model": "text-embedding-3-small", "input": ["a", "b", "c", "d", "e"]})
    assert _code(lambda: check_job(LIMITS, chat_request(), metadata={"k": "v" * 40})) == "metadata_too_large"
    long_url = "https://example.com/" + "x" * 80
    assert _code(lambda: check_job(LIMITS, chat_request(), webhook_url=long_url)) == "url_too_long"
    assert _code(lambda: check_job(LIMITS, vision_request(url=long_url))) == "url_too_long"
    check_job(LIMITS, vision_request(), metadata={"k": "v"}, webhook_url="https://example.com/hook")
    check_jsonl_line(LIMITS, b"x" * 100, line_number=1)
    assert _code(lambda: check_jsonl_line(LIMITS, "x" * 101, line_number=7)) == "line_too_large"


def test_limit_errors_point_at_the_field() -> None:
    with pytest.raises(LimitExceeded) as caught:
        check_job(LIMITS, vision_request(url="https://example.com/" + "x" * 80), prefix="body.")
    assert caught.value.param == "body.request.messages.0.content.1.image_url.url"
    assert caught.value.status_code == 422
