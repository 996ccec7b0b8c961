"""Simulator settings from flags and environment, runtime changes, and limits from tiers."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from config.tiers import parse_tiers
from simulator.latency import LatencySpec
from simulator.model_limits import build_limit_table
from simulator.ratelimit import Limits
from simulator.server import build_parser, settings_from_args
from simulator.settings import SettingsError, SimulatorSettings, apply_changes, load_settings, parse_limits

pytestmark = pytest.mark.unit


def test_no_flags_and_no_environment_give_the_defaults() -> None:
    assert settings_from_args([], environ={}) == SimulatorSettings()


def test_by_default_the_simulator_listens_on_loopback_only() -> None:
    host = settings_from_args([], environ={}).host
    assert ipaddress.ip_address(host).is_loopback


def test_flags_beat_environment_which_beats_defaults() -> None:
    environ = {
        "BATCHERY_SIM_PORT": "9000",
        "BATCHERY_SIM_ERROR_RATE": "0.25",
        "BATCHERY_SIM_NO_LIMITS": "yes",
    }
    settings = settings_from_args(
        ["--port", "9100", "--latency", "uniform:5:10", "--tiers", "x.toml"], environ
    )
    assert settings.port == 9100
    assert settings.error_rate == 0.25
    assert settings.no_limits is True
    assert settings.latency == LatencySpec("uniform", 5, 10)
    assert settings.tiers == Path("x.toml")


def test_switches_and_limits() -> None:
    settings = settings_from_args(
        ["--no-limits", "--quota-exceeded", "--default-limits", "rpm=10,tpm=500", "--require-key", "sk-1"], {}
    )
    assert settings.no_limits and settings.quota_exceeded
    assert settings.default_limits == Limits(10, 500, 0)
    assert settings.require_key == "sk-1"
    assert settings.public()["require_key"] == "***"
    assert settings.public()["default_limits"] == "rpm=10,tpm=500,ipm=0"
    assert parse_limits("unlimited") == Limits()
    assert parse_limits("") is None


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        (["--error-rate", "2"], {}, "--error-rate: must be between 0 and 1"),
        (["--port", "http"], {}, "--port: expected an integer"),
        (["--latency", "slow"], {}, "--latency: latency 'slow'"),
        ([], {"BATCHERY_SIM_QUANTUM": "0"}, "BATCHERY_SIM_QUANTUM: must be above 0"),
        ([], {"BATCHERY_SIM_NO_LIMITS": "maybe"}, "BATCHERY_SIM_NO_LIMITS: expected true or false"),
        ([], {"BATCHERY_SIM_DEFAULT_LIMITS": "rps=3"}, "BATCHERY_SIM_DEFAULT_LIMITS: expected rpm=N"),
        ([], {"BATCHERY_SIM_LOG_LEVEL": "loud"}, "BATCHERY_SIM_LOG_LEVEL: must be one of"),
    ],
)
def test_bad_values_name_their_flag_or_variable(
    flags: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_args(flags, environ)
    assert str(caught.value).startswith(message)


def test_parser_lists_every_setting() -> None:
    help_text = build_parser().format_help()
    for flag in ("--tiers", "--limit-scale", "--no-limits", "--quantum", "--latency", "--hang-seconds"):
        assert flag in help_text


def test_runtime_changes() -> None:
    settings = apply_changes(
        SimulatorSettings(), {"error_rate": 0.5, "latency": "fixed:20", "no_limits": True}
    )
    assert (settings.error_rate, str(settings.latency), settings.no_limits) == (0.5, "fixed:20", True)
    with pytest.raises(SettingsError, match="port: cannot be changed at runtime"):
        apply_changes(settings, {"port": 1})
    with pytest.raises(SettingsError, match="hang_rate: must be between 0 and 1"):
        apply_changes(settings, {"hang_rate": -1})
    with pytest.raises(SettingsError, match="quota_exceeded: expected true or false"):
        apply_changes(settings, {"quota_exceeded": "sometimes"})


def test_load_settings_converts_json_values() -> None:
    settings = load_settings({"port": 8200, "hang_seconds": 1, "seed": "42"}, {})
    assert (settings.port, settings.hang_seconds, settings.seed) == (8200, 1.0, 42)


TIERS = {
    "tiers": {
        "chat": {
            "models": {
                "a": {"rpm": 100, "tpm": 10_000, "budget": "pool"},
                "b": {"rpm": 50, "tpm": 20_000, "budget": "pool"},
                "c": {"rpm": 10},
            }
        },
        "images": {"models": {"img": {"rpm": 5, "ipm": 4}}},
    }
}


def test_limit_table_from_tiers() -> None:
    table = build_limit_table(parse_tiers(TIERS), 1.0, None)
    assert table.known_models == ["a", "b", "c", "img"]
    rule_a, rule_b = table.rule_for("a"), table.rule_for("b")
    assert rule_a is not None and rule_b is not None
    assert rule_a == rule_b
    assert (rule_a.bucket, rule_a.limits) == ("pool", Limits(50, 10_000, 0))
    assert table.rule_for("img") is not None
    assert table.rule_for("unknown") is None
    assert not table.accepts_any_model


def test_limit_scale_and_default_limits() -> None:
    table = build_limit_table(parse_tiers(TIERS), 0.8, Limits(rpm=10))
    rule_c, rule_x = table.rule_for("c"), table.rule_for("anything")
    assert rule_c is not None and rule_c.limits == Limits(8, 0, 0)
    assert rule_x is not None and (rule_x.bucket, rule_x.limits) == ("anything", Limits(8, 0, 0))
    with_default_tier = build_limit_table(parse_tiers({**TIERS, "default_tier": "chat"}), 1.0, None)
    rule = with_default_tier.rule_for("other")
    assert rule is not None and rule.limits.unlimited
