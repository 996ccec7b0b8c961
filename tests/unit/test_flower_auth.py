"""Flower always gets basic-auth credentials: the configured ones, a generated one on a laptop, and a
refusal in production without a real password. Compose passes the settings to Flower."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli.flower_auth import flower_env
from config.errors import ConfigError
from config.settings import load_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_configured_credentials_reach_flower_through_its_environment() -> None:
    broker = "redis://default:broker-secret@127.0.0.1:6379/3"
    settings = load_settings(flower_user="ops", flower_password="correct-horse-battery", redis_url=broker)
    env, note = flower_env(settings, {"PATH": "/bin"})
    assert env == {
        "PATH": "/bin",
        "FLOWER_BASIC_AUTH": "ops:correct-horse-battery",
        "CELERY_BROKER_URL": broker,
    }
    assert note is None


def test_a_laptop_without_a_password_gets_a_generated_one() -> None:
    first, note = flower_env(load_settings(), {})
    second, _ = flower_env(load_settings(), {})
    user, password = first["FLOWER_BASIC_AUTH"].split(":", 1)
    assert user == "admin" and len(password) >= 16 and first != second
    assert note is not None and password in note


@pytest.mark.parametrize("password", ["", "changeme", "secret"])
def test_production_needs_a_real_password(password: str) -> None:
    settings = load_settings(environment="production", flower_password=password)
    with pytest.raises(ConfigError, match="BATCHERY_FLOWER_PASSWORD"):
        flower_env(settings, {})


def test_bad_user_names_and_passwords_are_refused() -> None:
    with pytest.raises(ConfigError, match="BATCHERY_FLOWER_USER"):
        load_settings(flower_user="a:b")
    with pytest.raises(ConfigError, match="BATCHERY_FLOWER_PASSWORD"):
        flower_env(load_settings(flower_password="one,two-three-four"), {})


def test_compose_runs_flower_with_the_credentials() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    environment = services["flower"]["environment"]
    assert environment["BATCHERY_ENVIRONMENT"] == "production"
    assert {"BATCHERY_FLOWER_USER", "BATCHERY_FLOWER_PASSWORD"} <= set(environment)
    command = " ".join(services["flower"]["command"])
    assert "exec batchery flower" in command
