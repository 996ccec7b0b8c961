"""Today's models route out of the box; dated snapshots and -latest aliases share their base model's
tier, limits, bucket and price; other unknown models stay refused."""

from __future__ import annotations

import datetime

import pytest

from config.prices import load_prices
from config.tiers import DEFAULT_TIERS_FILE, load_tiers, model_family, parse_tiers
from simulator.model_limits import build_limit_table
from workers.buckets import Budget

TIERS = load_tiers(DEFAULT_TIERS_FILE)


@pytest.mark.parametrize(
    ("model", "tier"),
    [
        ("gpt-5.1", "premium"),
        ("gpt-5.1-chat-latest", "premium"),
        ("gpt-5-chat-latest", "premium"),
        ("o1", "premium"),
        ("gpt-5-nano", "standard"),
        ("o4-mini", "standard"),
        ("o3-mini", "standard"),
        ("gpt-4o-2024-08-06", "premium"),
        ("gpt-4.1-mini-2025-04-14", "standard"),
        ("gpt-4o-mini-2024-07-18", "standard"),
        ("o3-latest", "premium"),
        ("text-embedding-3-small", "embeddings"),
        ("gpt-image-1", "images"),
    ],
)
def test_default_tiers_route_todays_models(model: str, tier: str) -> None:
    found = TIERS.tier_for(model)
    assert found is not None and found.name == tier


def test_unknown_models_stay_refused_by_default() -> None:
    assert TIERS.default_tier is None
    for model in ("gpt-4o-typo", "grok-4", "2024-08-06", "-latest", "claude-2025-01-01"):
        assert TIERS.tier_for(model) is None, model
        assert TIERS.limits_for(model) is None


def test_model_family_strips_snapshot_and_alias_suffixes() -> None:
    assert model_family("gpt-4o-2024-08-06") == ["gpt-4o-2024-08-06", "gpt-4o"]
    assert model_family("gpt-4-0613") == ["gpt-4-0613", "gpt-4"]
    assert model_family("gpt-5.1-chat-latest") == ["gpt-5.1-chat-latest", "gpt-5.1-chat"]
    assert model_family("gpt-4o-mini") == ["gpt-4o-mini"]
    assert model_family("2024-08-06") == ["2024-08-06"]


def test_a_snapshot_shares_its_base_models_bucket_and_limits() -> None:
    base = TIERS.limits_for("gpt-4o")
    snapshot = TIERS.limits_for("gpt-4o-2024-08-06")
    assert base is not None and snapshot is not None
    assert (snapshot.rpm, snapshot.tpm) == (base.rpm, base.tpm)
    burst = TIERS.burst_seconds
    assert (
        Budget.for_model("premium", "gpt-4o-2024-08-06", snapshot, burst).name
        == Budget.for_model("premium", "gpt-4o", base, burst).name
    )


def test_a_snapshot_keeps_a_named_shared_budget() -> None:
    tiers = parse_tiers(
        {"tiers": {"std": {"models": {"gpt-4o-mini": {"rpm": 10, "budget": "minis"}, "x": {"rpm": 5}}}}}
    )
    limits = tiers.limits_for("gpt-4o-mini-2024-07-18")
    assert limits is not None and limits.budget == "minis"


def test_an_exact_entry_wins_over_its_family() -> None:
    tiers = parse_tiers(
        {
            "tiers": {
                "a": {"models": {"gpt-4o": {"rpm": 10}}},
                "b": {"models": {"gpt-4o-2024-05-13": {"rpm": 3}}},
            }
        }
    )
    found = tiers.tier_for("gpt-4o-2024-05-13")
    limits = tiers.limits_for("gpt-4o-2024-05-13")
    assert found is not None and found.name == "b"
    assert limits is not None and limits.rpm == 3 and limits.budget is None


def test_the_simulator_serves_snapshots_in_their_base_models_bucket() -> None:
    table = build_limit_table(TIERS, 1.0, None)
    rule = table.rule_for("gpt-4o-2024-08-06")
    base = table.rule_for("gpt-4o")
    assert rule is not None and base is not None and rule.bucket == base.bucket == "gpt-4o"
    assert table.rule_for("gpt-5-nano") is not None
    assert table.rule_for("grok-4") is None


def test_every_default_model_and_snapshot_has_a_price() -> None:
    prices = load_prices()
    day = datetime.date(2025, 12, 1)
    missing = [model for model in TIERS.known_models if prices.price_on(model, day) is None]
    assert missing == []
    snapshot = prices.price_on("gpt-4o-2024-08-06", day)
    base = prices.price_on("gpt-4o", day)
    assert snapshot is not None and snapshot == base


def test_metrics_label_a_snapshot_with_its_base_model() -> None:
    from domain.metrics.catalog import MetricLabels

    labels = MetricLabels(TIERS)
    assert labels.model("gpt-4o-2024-08-06") == "gpt-4o"
    assert labels.model("gpt-5-nano") == "gpt-5-nano"
    assert labels.model("grok-4") == "other"
