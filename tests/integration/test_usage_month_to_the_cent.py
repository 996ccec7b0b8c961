"""A month's ``GET /v1/usage`` equals the sum of its jobs' costs to the cent, on SQLite and PostgreSQL.

Each job's cost is worked out here by hand from the dated price table below (cached input at its own
price, reasoning tokens inside the output, image tokens of a vision prompt inside the input, gpt-image
tokens, dall-e images per image, and batch lines like any other job, across a mid-month price change);
the report over the month must add up to their sum. A batch's budget reservation settles to the same
cost as the report gives its jobs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from config.prices import load_prices
from config.settings import load_settings
from domain.budgets.admission import Holder, reserve
from domain.budgets.limits import BudgetLimits, set_budget
from domain.budgets.pricing import Charge
from domain.budgets.settlement import settle_finished
from domain.ids import job_id, new_id
from domain.storage.models import Batch, Job
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.storage.spend_models import SpendReservation
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration

PRICES = """
[[models."gpt-4o-mini"]]
effective = 2025-01-01
input = 0.15
cached_input = 0.075
output = 0.60

[[models."gpt-4o-mini"]]
effective = 2025-06-16
input = 0.10
cached_input = 0.025
output = 0.40

[[models."o3"]]
effective = 2025-01-01
input = 2.00
cached_input = 0.50
output = 8.00

[[models."gpt-4o"]]
effective = 2025-01-01
input = 2.50
cached_input = 1.25
output = 10.00

[[models."gpt-image-1"]]
effective = 2025-01-01
input = 5.00
cached_input = 1.25
output = 40.00

[[models."dall-e-3"]]
effective = 2025-01-01
default_quality = "standard"
default_size = "1024x1024"
[models."dall-e-3".images.standard]
"1024x1024" = 0.04
[models."dall-e-3".images.hd]
"1024x1792" = 0.12

[[models."text-embedding-3-small"]]
effective = 2025-01-01
input = 0.02
"""

# USD per million tokens (input, cached input, output) by model and the day a price took effect: the
# figures above, written again so that the oracle shares nothing with the code under test.
RATES = {
    ("gpt-4o-mini", 1): ("0.15", "0.075", "0.60"),
    ("gpt-4o-mini", 16): ("0.10", "0.025", "0.40"),
    ("o3", 1): ("2.00", "0.50", "8.00"),
    ("gpt-4o", 1): ("2.50", "1.25", "10.00"),
    ("gpt-image-1", 1): ("5.00", "1.25", "40.00"),
    ("text-embedding-3-small", 1): ("0.02", "0.02", "0"),
}
PER_IMAGE = {("standard", "1024x1024"): Decimal("0.04"), ("hd", "1024x1792"): Decimal("0.12")}


@dataclass(frozen=True)
class Line:
    """One job of the month and how it was used."""

    model: str
    day: int
    prompt: int = 0
    completion: int = 0
    cached: int = 0
    reasoning: int = 0
    images: int = 0
    kind: str = "chat"
    request: tuple[tuple[str, str], ...] = ()
    batch: bool = False
    status: str = "succeeded"
    month: int = 6

    def cost(self) -> Decimal:
        """The hand-worked cost of this job."""
        if self.model == "dall-e-3":
            found = dict(self.request)
            return self.images * PER_IMAGE[(found.get("quality", "standard"), found.get("size", "1024x1024"))]
        since = max(start for model, start in RATES if model == self.model and start <= self.day)
        rate_in, rate_cached, rate_out = (Decimal(x) for x in RATES[(self.model, since)])
        uncached = self.prompt - self.cached
        # reasoning tokens are part of completion tokens: billed once, as output
        return (uncached * rate_in + self.cached * rate_cached + self.completion * rate_out) / 1_000_000


LINES = [
    Line("gpt-4o-mini", 2, prompt=12_345, completion=2_345, cached=4_096),
    Line("gpt-4o-mini", 15, prompt=800_000, completion=120_000, cached=300_000),
    Line("gpt-4o-mini", 16, prompt=800_000, completion=120_000, cached=300_000),  # the new price
    Line("gpt-4o-mini", 30, prompt=51, completion=7),
    Line("o3", 3, prompt=40_000, completion=90_000, reasoning=70_000, cached=10_000),
    Line("o3", 22, prompt=1_234_567, completion=765_432, reasoning=500_000),
    Line(
        "gpt-4o", 9, prompt=85 + 765 + 1105 + 40, completion=300, kind="vision"
    ),  # image tokens in the prompt
    Line(
        "gpt-image-1",
        11,
        prompt=22,
        completion=4160 * 2,
        images=2,
        kind="image",
        request=(("size", "1024x1024"), ("quality", "high")),
    ),
    Line("dall-e-3", 12, images=3, kind="image"),
    Line("dall-e-3", 12, images=1, kind="image", request=(("quality", "hd"), ("size", "1024x1792"))),
    Line("text-embedding-3-small", 20, prompt=987_654, kind="embedding"),
    Line("gpt-4o-mini", 25, prompt=2_000, completion=500, cached=1_024, batch=True),
    Line("gpt-4o-mini", 25, prompt=3_000, completion=700, batch=True),
    Line("o3", 26, prompt=5_000, completion=9_000, reasoning=6_000, batch=True),
    Line("gpt-4o-mini", 27, prompt=700, completion=70, status="cancelled"),  # its call ran: billed
]
OUTSIDE = [  # not in June, or never billed
    Line("gpt-4o-mini", 31, prompt=10**6, completion=10**6, month=5),
    Line("gpt-4o-mini", 1, prompt=10**6, completion=10**6, month=7),
    Line("gpt-4o-mini", 10, prompt=10**6, status="failed"),
]


def _job(line: Line, tenant: str, batch_id: str | None) -> Job:
    at = datetime(2025, line.month, line.day, 13, 45, tzinfo=UTC)
    return Job(
        id=job_id(),
        tenant_id=tenant,
        kind=line.kind,
        model=line.model,
        tier="standard",
        status=line.status,
        request={"model": line.model, **dict(line.request)},
        prompt_tokens=line.prompt,
        completion_tokens=line.completion,
        total_tokens=line.prompt + line.completion,
        cached_tokens=line.cached,
        reasoning_tokens=line.reasoning,
        images=line.images,
        attempts=1,
        created_at=at,
        finished_at=at,
        batch_id=batch_id if line.batch else None,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / f"prices-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(PRICES)
    return path


@pytest.fixture
def client(database_url: str, redis_url: str, prices_file: Path) -> Iterator[TestClient]:
    settings = load_settings(database_url=database_url, redis_url=redis_url, prices_file=prices_file)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _cents(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def test_a_months_usage_report_equals_the_sum_of_its_jobs_costs_to_the_cent(
    client: TestClient, database_url: str, prices_file: Path
) -> None:
    tenant = f"cents-{uuid.uuid4().hex[:8]}"
    engine = make_engine(database_url, pool_size=1)
    sessions = make_session_factory(engine)
    batch_id = new_id("batch")
    try:
        with session_scope(sessions) as session:
            session.add_all(_job(line, tenant, batch_id) for line in LINES + OUTSIDE)
        answer = client.get(
            "/v1/usage",
            params={"group_by": "day", "start": "2025-06-01T00:00:00Z", "end": "2025-07-01T00:00:00Z"},
            headers=bearer(create_key(database_url, tenant, ["jobs:read"])),
        )
        assert answer.status_code == 200, answer.text
        report = answer.json()
        expected = sum((line.cost() for line in LINES), start=Decimal(0))
        assert _cents(report["total"]["cost_usd"]) == _cents(expected)
        assert abs(Decimal(str(report["total"]["cost_usd"])) - expected) < Decimal("1e-8")
        assert report["total"]["requests"] == len(LINES) and report["total"]["unpriced_requests"] == 0
        assert report["total"]["cached_tokens"] == sum(line.cached for line in LINES)
        assert report["total"]["reasoning_tokens"] == sum(line.reasoning for line in LINES)
        assert report["total"]["images"] == sum(line.images for line in LINES)
        by_day = {group["key"]: Decimal(str(group["cost_usd"])) for group in report["data"]}
        for day in {line.day for line in LINES}:
            spent = sum((line.cost() for line in LINES if line.day == day), start=Decimal(0))
            assert _cents(by_day[f"2025-06-{day:02d}"]) == _cents(spent)

        # the batch's budget reservation settles to what its lines cost
        with session_scope(sessions) as session:
            session.add(
                Batch(
                    id=batch_id,
                    tenant_id=tenant,
                    endpoint="/v1/chat/completions",
                    input_file_id="file-none",
                    completion_window="24h",
                    status="completed",
                )
            )
            set_budget(session, BudgetLimits(usd_per_month=Decimal(100)), tenant_id=tenant)
        with session_scope(sessions) as session:
            charge = Charge("gpt-4o-mini", 50_000, 10**9)
            reserve(
                session,
                tenant_id=tenant,
                key_id=None,
                charges=[(Holder("batch", batch_id), charge)],
                now=datetime(2025, 6, 25, tzinfo=UTC),
            )
        with session_scope(sessions) as session:
            assert settle_finished(session, load_prices(prices_file), now=datetime.now(UTC)) >= 1
            held = session.scalars(
                select(SpendReservation).where(SpendReservation.holder_id == batch_id)
            ).one()
            batch_cost = sum((line.cost() for line in LINES if line.batch), start=Decimal(0))
            assert held.spent_nano is not None and abs(held.spent_nano - batch_cost * 10**9) <= 1
            assert held.spent_tokens == sum(line.prompt + line.completion for line in LINES if line.batch)
    finally:
        engine.dispose()
