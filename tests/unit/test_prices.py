"""The price table and the cost of stored usage: entries by date, the formula, and bad files."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from config.errors import ConfigError
from config.prices import DEFAULT_PRICES_FILE, load_prices
from config.tiers import DEFAULT_TIERS_FILE, load_tiers
from domain.tokens.costs import UsageAmounts, usage_cost

pytestmark = pytest.mark.unit


def test_every_model_of_the_default_tiers_has_a_price() -> None:
    prices = load_prices(DEFAULT_PRICES_FILE)
    for model in load_tiers(DEFAULT_TIERS_FILE).known_models:
        assert prices.price_on(model, date(2030, 1, 1)) is not None, model


def test_the_entry_in_effect_on_a_day_prices_it() -> None:
    prices = load_prices(DEFAULT_PRICES_FILE)

    assert prices.price_on("o3", date(2025, 4, 15)) is None
    assert prices.price_on("o3", date(2025, 6, 9)).input == Decimal("10.00")  # type: ignore[union-attr]
    assert prices.price_on("o3", date(2025, 6, 10)).input == Decimal("2.00")  # type: ignore[union-attr]
    assert prices.price_on("no-such-model", date(2025, 6, 10)) is None


def test_cost_bills_cached_input_at_its_price_and_reasoning_once() -> None:
    price = load_prices(DEFAULT_PRICES_FILE).price_on("gpt-4o-mini", date(2025, 1, 1))
    usage = UsageAmounts(
        requests=1, input_tokens=1000, cached_tokens=200, output_tokens=500, reasoning_tokens=300
    )

    # (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1e6
    assert usage_cost(price, usage).usd == Decimal("0.000435")


def test_images_are_priced_by_quality_and_size_with_defaults() -> None:
    price = load_prices(DEFAULT_PRICES_FILE).price_on("dall-e-3", date(2025, 1, 1))

    assert usage_cost(
        price, UsageAmounts(requests=1, images=2), quality="hd", size="1792x1024"
    ).usd == Decimal("0.24")
    assert usage_cost(price, UsageAmounts(requests=1, images=1)).usd == Decimal("0.04")
    unlisted = usage_cost(price, UsageAmounts(requests=1, images=1), quality="ultra", size="1x1")
    assert unlisted.usd == 0 and not unlisted.priced


def test_usage_without_a_price_is_reported_unpriced() -> None:
    assert not usage_cost(None, UsageAmounts(requests=1, input_tokens=5)).priced
    assert usage_cost(None, UsageAmounts()).priced


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[[models."m"]]\neffective = 2025-01-01\ninput = -1\n', "greater than or equal to 0"),
        (
            '[[models."m"]]\neffective = 2025-01-01\n[[models."m"]]\neffective = 2025-01-01\n',
            "same effective date",
        ),
        ('[[models."m"]]\ninput = 1\n', "effective"),
        ('[[models."m"]]\neffective = 2025-01-01\nprice = 1\n', "price"),
        ("models = = 1\n", "line 1"),
    ],
)
def test_a_bad_prices_file_names_the_file_and_the_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_prices(path)

    assert str(path) in caught.value.message and reason in caught.value.message
