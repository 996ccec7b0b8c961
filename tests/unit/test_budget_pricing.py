"""Budget arithmetic without a database: periods and their resets, the estimate a job reserves, the
money shown in refusals, and the per-process book of budgets on a fake clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from config.prices import parse_prices
from domain.budgets.limits import BudgetBook
from domain.budgets.periods import Period, period_reset, period_start
from domain.budgets.pricing import estimate_charge, to_nano, usd_text
from domain.tokens.estimates import estimate_cost

pytestmark = pytest.mark.unit

PRICES = parse_prices(
    {
        "models": {
            "gpt-4o-mini": [{"effective": date(2024, 1, 1), "input": "0.15", "output": "0.60"}],
            "text-embedding-3-small": [{"effective": date(2024, 1, 1), "input": "0.02"}],
            "dall-e-3": [
                {
                    "effective": date(2024, 1, 1),
                    "default_quality": "standard",
                    "default_size": "1024x1024",
                    "images": {"standard": {"1024x1024": "0.04"}},
                }
            ],
            "later": [{"effective": date(2030, 1, 1), "input": "1"}],
        }
    }
)
DAY = date(2026, 2, 10)


@pytest.mark.parametrize(
    ("period", "now", "starts", "resets"),
    [
        (
            Period.day,
            datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
            date(2026, 2, 28),
            datetime(2026, 3, 1, tzinfo=UTC),
        ),
        (
            Period.month,
            datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
            date(2026, 2, 1),
            datetime(2026, 3, 1, tzinfo=UTC),
        ),
        (
            Period.month,
            datetime(2026, 12, 31, 12, tzinfo=UTC),
            date(2026, 12, 1),
            datetime(2027, 1, 1, tzinfo=UTC),
        ),
        (Period.month, datetime(2028, 1, 31, tzinfo=UTC), date(2028, 1, 1), datetime(2028, 2, 1, tzinfo=UTC)),
    ],
)
def test_periods_are_utc_calendar_days_and_months(
    period: Period, now: datetime, starts: date, resets: datetime
) -> None:
    assert period_start(period, now) == starts
    assert period_reset(period, starts) == resets


def test_a_chat_estimate_prices_the_prompt_as_input_and_the_replys_room_as_output() -> None:
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}
    tokens = estimate_cost("chat", request).tokens
    prompt = tokens - 1000
    charge = estimate_charge("chat", "gpt-4o-mini", request, tokens, PRICES, DAY)
    assert charge.priced and charge.tokens == tokens and 0 < prompt < 20
    expected = (prompt * Decimal("0.15") + 1000 * Decimal("0.60")) / 10**6
    assert charge.usd_nano == to_nano(expected, round_up=True)


def test_embeddings_are_all_input_and_images_priced_per_image() -> None:
    embedding = estimate_charge("embedding", "text-embedding-3-small", {"input": "x"}, 1_000_000, PRICES, DAY)
    assert embedding.usd_nano == 20_000_000  # $0.02
    images = estimate_charge("image", "dall-e-3", {"prompt": "a cat", "n": 3}, 0, PRICES, DAY)
    assert images.usd_nano == 120_000_000  # 3 x $0.04
    odd_size: dict[str, Any] = {"prompt": "a cat", "size": "9x9"}
    assert not estimate_charge("image", "dall-e-3", odd_size, 0, PRICES, DAY).priced


def test_a_model_without_a_price_that_day_is_unpriced() -> None:
    assert not estimate_charge("chat", "no-such-model", {}, 10, PRICES, DAY).priced
    assert not estimate_charge("chat", "later", {}, 10, PRICES, DAY).priced


def test_estimates_round_up_to_the_nano_dollar_and_money_reads_well() -> None:
    assert to_nano(Decimal("0.0000000001"), round_up=True) == 1
    assert to_nano(Decimal("0.0000000004")) == 0
    assert usd_text(1_234_567_890) == "$1.23"
    assert usd_text(600_150) == "$0.00060015"
    assert usd_text(0) == "$0.00"


class _FakeSession:
    def __init__(self) -> None:
        self.reads = 0


def test_the_book_reads_a_tenants_budgets_at_most_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    session = _FakeSession()

    def list_budgets(fake: _FakeSession, *, tenant_id: str | None) -> list[Any]:
        fake.reads += 1
        return []

    monkeypatch.setattr("domain.budgets.limits.list_budgets", list_budgets)
    book = BudgetBook(ttl=1.0, clock=lambda: now[0])
    assert book.budgets_of(session, tenant_id="acme") == {}  # type: ignore[arg-type]
    book.budgets_of(session, tenant_id="acme")  # type: ignore[arg-type]
    assert session.reads == 1
    now[0] = 1.5
    book.budgets_of(session, tenant_id="acme")  # type: ignore[arg-type]
    assert session.reads == 2
    book.forget(tenant_id="acme")
    book.budgets_of(session, tenant_id="acme")  # type: ignore[arg-type]
    assert session.reads == 3
