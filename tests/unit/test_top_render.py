"""``batchery top``'s frame: tier totals, shared budgets counted once, figures people can read, and
spend budgets against their limits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from rich.console import Console

from cli.top import compact, render, render_budgets
from cli.top_data import ModelView, TierView
from domain.budgets.periods import Period
from domain.budgets.status import PeriodSpend

pytestmark = pytest.mark.unit


def _model(name: str, budget: str, rpm_used: float, **extra: float) -> ModelView:
    values = {"waits": 0.0, "wait_ms_total": 0.0, "rate_limited": 0.0, "errors": 0.0, "failed": 0.0, **extra}
    return ModelView(name, budget, rpm_used, 100, rpm_used * 10, 10_000, **values)  # type: ignore[arg-type]


def test_a_tier_adds_its_models_and_counts_a_shared_budget_once() -> None:
    view = TierView(
        "standard",
        queue=3,
        backlog=1200,
        in_flight=7,
        models=[
            _model("a", "shared", 10, waits=2, wait_ms_total=300),
            _model("b", "shared", 20, waits=1, wait_ms_total=0, rate_limited=2),
            _model("c", "standard:c", 5),
        ],
    )

    assert (view.rpm_used, view.rpm_limit) == (35, 200)
    assert (view.tpm_used, view.tpm_limit) == (350, 20_000)
    assert view.wait_ms == 100 and view.rate_limited == 2


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (999, "999"), (1000, "1k"), (1250, "1.2k"), (4_000_000, "4M"), (2.4e9, "2.4G")],
)
def test_figures_are_compact(value: float, text: str) -> None:
    assert compact(value) == text


def test_a_frame_shows_every_tier_its_models_and_a_paused_bucket() -> None:
    views = [
        TierView("premium", 0, 0, 2, [_model("gpt-4o", "premium:gpt-4o", 95, paused_seconds=1.5)]),
        TierView("images", 4, 10, 0, [_model("dall-e-3", "images:dall-e-3", 0)]),
    ]
    console = Console(width=160, record=True, color_system=None)

    console.print(render(views))
    text = console.export_text()

    assert "premium" in text and "images" in text and "dall-e-3" in text
    assert "gpt-4o paused 1.5s" in text
    assert "95/100  95%" in text


def test_budgets_show_spent_plus_reserved_against_each_limit() -> None:
    assert render_budgets([]) is None
    spend = PeriodSpend(
        tenant_id="acme",
        key_id="",
        period=Period.day,
        starts=date(2026, 12, 5),
        resets_at=datetime(2026, 12, 6, tzinfo=UTC),
        limit_usd=Decimal(20),
        spent_usd=Decimal("17.5"),
        reserved_usd=Decimal("1.5"),
        limit_tokens=None,
        spent_tokens=1_200_000,
        reserved_tokens=30_000,
    )
    table = render_budgets([spend])
    assert table is not None
    console = Console(width=140, record=True)
    console.print(table)
    text = console.export_text()
    assert "acme" in text and "*" in text and "day" in text
    assert "$17.50+$1.50/$20.00  95%" in text
    assert "1.2M+30k/-" in text and "12-06 00:00" in text
