"""Provider configuration: keys from a named variable, auth styles, static headers kept secret, and
settings errors that name the variable once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.providers import Provider
from config.settings import load_settings

SECRET = "gw-secret-header-value-0123456789"


def _providers(monkeypatch: pytest.MonkeyPatch, value: dict[str, object]) -> None:
    monkeypatch.setenv("BATCHERY_PROVIDERS", json.dumps(value))


def test_a_key_is_read_from_the_variable_api_key_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_KEY", "gk-from-the-environment")
    _providers(
        monkeypatch, {"gw": {"base_url": "https://gw.example/v1/api/openai", "api_key_env": "GATEWAY_KEY"}}
    )
    provider = load_settings().providers["gw"]
    assert provider.api_key.get_secret_value() == "gk-from-the-environment"
    assert provider.request_headers() == {"authorization": "Bearer gk-from-the-environment"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"api_key_env": "NO_SUCH_VARIABLE_SET"}, "NO_SUCH_VARIABLE_SET, which is not set"),
        ({"api_key_env": "GATEWAY_KEY", "api_key": "inline"}, "not both"),
        ({"api_key_env": "not a name"}, "name of an environment variable"),
        ({"auth": "basic"}, "'bearer', 'api-key', 'x-api-key' or 'none'"),
        ({"auth": "none", "api_key": "k"}, "auth 'none' sends no key"),
        ({"headers": {"bad name": "x"}}, "not a valid HTTP header name"),
        ({"headers": {"Content-Type": "text/plain"}}, "set by batchery itself"),
        ({"headers": {"X-Team": "a\r\nInjected: 1"}}, "one line"),
        ({"auth": "x-api-key", "api_key": "k", "headers": {"X-Api-Key": "other"}}, "auth 'x-api-key' sets"),
        ({"base_url": "gw.example/v1"}, "http:// or https://"),
    ],
)
def test_bad_providers_get_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch, body: dict[str, object], reason: str
) -> None:
    monkeypatch.setenv("GATEWAY_KEY", "gk")
    _providers(monkeypatch, {"gw": {"base_url": "https://gw.example/v1", **body}})
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = info.value.message
    assert reason in message and "BATCHERY_PROVIDERS.gw" in message
    assert message.count("BATCHERY_PROVIDERS") == 1 and "BATCHERY_BATCHERY" not in message


def test_auth_styles_put_the_key_where_the_provider_reads_it() -> None:
    base = "https://h.example/openai/v1"
    assert Provider(base_url=base, api_key="k1").request_headers() == {"authorization": "Bearer k1"}
    azure_v1 = Provider(base_url=base, api_key="k2", auth="api-key")
    assert azure_v1.request_headers() == {"api-key": "k2"} and azure_v1.query_params() == {}
    deployment = Provider(base_url=base, api_key="k2", auth="api-key", api_version="2024-10-21")
    assert deployment.query_params() == {"api-version": "2024-10-21"}
    assert Provider(base_url=base, api_key="k3", auth="x-api-key").request_headers() == {"x-api-key": "k3"}
    assert Provider(base_url=base, auth="none").request_headers() == {}


def test_static_headers_travel_and_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    _providers(
        monkeypatch,
        {
            "gw": {
                "base_url": "https://gw.example/v1",
                "api_key": "sk-inline-gateway-key-987654",
                "headers": {"OpenAI-Organization": "org-1", "X-Gateway-Token": SECRET},
            }
        },
    )
    settings = load_settings()
    provider = settings.providers["gw"]
    assert provider.request_headers() == {
        "OpenAI-Organization": "org-1",
        "X-Gateway-Token": SECRET,
        "authorization": "Bearer sk-inline-gateway-key-987654",
    }
    for text in (repr(settings), str(settings), repr(provider), provider.model_dump_json()):
        assert SECRET not in text and "sk-inline-gateway-key-987654" not in text


def test_a_bad_header_value_never_shows_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _providers(monkeypatch, {"gw": {"base_url": "https://gw.example/v1", "headers": {"X-T": SECRET + "\n"}}})
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert SECRET not in info.value.message


def test_production_refuses_a_provider_without_its_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("BATCHERY_PROVIDERS", raising=False)
    settings = load_settings(environment="production")
    with pytest.raises(ConfigError) as info:
        settings.check_provider_keys()
    assert "OPENAI_API_KEY" in info.value.message and "premium" in info.value.message
    load_settings(environment="development").check_provider_keys()  # a laptop runs the simulator
    load_settings(environment="production", openai_api_key="sk-real").check_provider_keys()
    keyless = {"openai": {"base_url": "http://vllm.internal:8000/v1", "auth": "none"}}
    _providers(monkeypatch, keyless)
    load_settings(environment="production").check_provider_keys()


def test_header_values_and_keys_are_remembered_for_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    from domain.redaction import redact, remember_secrets
    from infra.log_setup import secrets_of

    monkeypatch.setenv("GATEWAY_KEY", "plainhexkey0123456789abcdef")
    _providers(
        monkeypatch,
        {
            "gw": {
                "base_url": "https://gw.example/v1",
                "api_key_env": "GATEWAY_KEY",
                "headers": {"X-T": SECRET},
            }
        },
    )
    secrets = secrets_of(load_settings())
    assert SECRET in secrets and "plainhexkey0123456789abcdef" in secrets
    remember_secrets(secrets)
    text = redact(f"upstream said: bad header {SECRET} for key plainhexkey0123456789abcdef")
    assert SECRET not in text and "plainhexkey0123456789abcdef" not in text
