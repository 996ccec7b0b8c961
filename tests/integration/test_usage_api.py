"""``GET /v1/usage`` against real SQLite and real PostgreSQL: the sums equal the sums of the job rows,
the cost equals figures computed by hand (across a price change), and tenants see only their own."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from domain.ids import job_id
from domain.storage.models import Job
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tenancy import api_keys

pytestmark = pytest.mark.integration

PRICES = """
[[models."gpt-4o-mini"]]
effective = 2025-01-01
input = 0.15
cached_input = 0.075
output = 0.60

[[models."o3"]]
effective = 2025-01-01
input = 10.00
cached_input = 2.50
output = 40.00

[[models."o3"]]
effective = 2025-06-10
input = 2.00
cached_input = 0.50
output = 8.00

[[models."text-embedding-3-small"]]
effective = 2025-01-01
input = 0.02
batch_input = 0.015

[[models."dall-e-3"]]
effective = 2025-01-01
default_quality = "standard"
default_size = "1024x1024"
[models."dall-e-3".images.standard]
"1024x1024" = 0.04
[models."dall-e-3".images.hd]
"1024x1792" = 0.12
"""


@dataclass
class Api:
    client: TestClient
    url: str

    def usage(self, key: str, **params: Any) -> Any:
        return self.client.get("/v1/usage", params=params, headers={"authorization": f"Bearer {key}"})

    def key(self, tenant: str, scopes: tuple[str, ...] = ("jobs:read",)) -> str:
        engine = make_engine(self.url)
        try:
            with session_scope(make_session_factory(engine)) as session:
                return api_keys.create_key(session, tenant_id=tenant, scopes=scopes).key
        finally:
            engine.dispose()

    def add_jobs(self, rows: list[dict[str, Any]]) -> None:
        engine = make_engine(self.url)
        try:
            with session_scope(make_session_factory(engine)) as session:
                for row in rows:
                    session.add(_job(**row))
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Api]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    settings = load_settings(database_url=url, redis_url=redis_url, prices_file=prices)
    with TestClient(create_app(settings)) as client:
        yield Api(client, url)


def row(**values: Any) -> dict[str, Any]:
    """One job row to store (see ``_job`` for the fields)."""
    return values


def _tenant() -> str:
    return f"usage-{uuid.uuid4().hex[:10]}"


def _job(
    tenant: str,
    model: str,
    finished: datetime | None,
    *,
    tier: str = "standard",
    kind: str = "chat",
    status: str = "succeeded",
    prompt: int = 0,
    completion: int = 0,
    cached: int = 0,
    reasoning: int = 0,
    images: int = 0,
    request: dict[str, Any] | None = None,
    path: str | None = None,
) -> Job:
    return Job(
        id=job_id(),
        tenant_id=tenant,
        kind=kind,
        model=model,
        tier=tier,
        status=status,
        request={"model": model, **(request or {})},
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        images=images,
        attempts=1,
        created_at=finished or datetime(2025, 1, 1, tzinfo=UTC),
        finished_at=finished,
        execution_path=path,
    )


def _at(day: int, hour: int = 12, month: int = 6) -> datetime:
    return datetime(2025, month, day, hour, 30, tzinfo=UTC)


def _workload(tenant: str) -> list[dict[str, Any]]:
    """Jobs of several models, tiers and days; some do not count (failed, queued, cancelled unrun)."""
    rows: list[dict[str, Any]] = []
    for index in range(6):
        rows.append(
            row(
                tenant=tenant,
                model="gpt-4o-mini",
                finished=_at(1 + index % 3, hour=index),
                prompt=100 + 17 * index,
                completion=40 + index,
                cached=10 * (index % 2),
                reasoning=index,
            )
        )
    rows.append(row(tenant=tenant, model="o3", tier="premium", finished=_at(2), prompt=900, completion=300))
    rows.append(
        row(
            tenant=tenant,
            model="text-embedding-3-small",
            tier="embeddings",
            kind="embedding",
            finished=_at(3),
            prompt=77,
        )
    )
    rows.append(
        row(tenant=tenant, model="gpt-4o-mini", finished=_at(2), status="cancelled", prompt=50, completion=5)
    )
    # not counted: a failed call, a queued job, a job cancelled before it ran
    rows.append(row(tenant=tenant, model="gpt-4o-mini", finished=_at(2), status="failed", prompt=999))
    rows.append(row(tenant=tenant, model="gpt-4o-mini", finished=None, status="queued"))
    rows.append(row(tenant=tenant, model="gpt-4o-mini", finished=_at(1), status="cancelled"))
    return rows


def _counted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        row
        for row in rows
        if row.get("status", "succeeded") == "succeeded"
        or (row.get("status") == "cancelled" and row.get("prompt", 0) + row.get("completion", 0) > 0)
    ]


FIELDS = {
    "input_tokens": "prompt",
    "output_tokens": "completion",
    "cached_tokens": "cached",
    "reasoning_tokens": "reasoning",
    "images": "images",
}


@pytest.mark.parametrize("group_by", ["model", "tier", "day", "tenant"])
def test_usage_sums_equal_the_sums_of_the_job_rows(api: Api, group_by: str) -> None:
    tenant = _tenant()
    rows = _workload(tenant)
    api.add_jobs(rows)
    key_of = {
        "model": lambda row: row["model"],
        "tier": lambda row: row.get("tier", "standard"),
        "day": lambda row: row["finished"].date().isoformat(),
        "tenant": lambda row: row["tenant"],
    }[group_by]
    expected: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in _counted(rows):
        sums = expected[key_of(row)]
        sums["requests"] += 1
        for field, column in FIELDS.items():
            sums[field] += row.get(column, 0)

    response = api.usage(api.key(tenant), group_by=group_by)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["group_by"] == group_by and body["tenant"] == tenant
    got = {item["key"]: {field: item[field] for field in ("requests", *FIELDS)} for item in body["data"]}
    assert got == {key: dict(sums) for key, sums in expected.items()}
    for field in ("requests", *FIELDS):
        assert body["total"][field] == sum(sums[field] for sums in expected.values())


def test_cost_matches_hand_computed_figures_across_a_price_change(api: Api) -> None:
    tenant = _tenant()
    api.add_jobs(
        [
            # (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1e6 = 0.000435
            row(tenant=tenant, model="gpt-4o-mini", finished=_at(1), prompt=1000, cached=200, completion=500),
            # the day before o3's price change: 10.00 + 100_000 * 40 / 1e6 = 14.00
            row(
                tenant=tenant,
                model="o3",
                tier="premium",
                finished=_at(9, 23),
                prompt=1_000_000,
                completion=100_000,
            ),
            # the day of the change: 2.00 + 0.80 = 2.80; reasoning tokens are output, not billed twice
            row(
                tenant=tenant,
                model="o3",
                tier="premium",
                finished=_at(10, 0),
                prompt=1_000_000,
                completion=100_000,
                reasoning=60_000,
            ),
            # 50_000 * 0.02 / 1e6 = 0.001
            row(
                tenant=tenant,
                model="text-embedding-3-small",
                tier="embeddings",
                kind="embedding",
                finished=_at(1),
                prompt=50_000,
            ),
            # 2 hd 1024x1792 images at 0.12, then 1 image at the defaults (standard 1024x1024) at 0.04
            row(
                tenant=tenant,
                model="dall-e-3",
                tier="images",
                kind="image",
                finished=_at(1),
                images=2,
                request={"size": "1024x1792", "quality": "hd"},
            ),
            row(tenant=tenant, model="dall-e-3", tier="images", kind="image", finished=_at(1), images=1),
            # a model the price table does not know: counted, costs 0, reported as unpriced
            row(tenant=tenant, model="in-house-model", finished=_at(1), prompt=10, completion=10),
        ]
    )
    key = api.key(tenant)

    by_model = {item["key"]: item for item in api.usage(key, group_by="model").json()["data"]}
    by_day = {item["key"]: item for item in api.usage(key, group_by="day").json()["data"]}

    def usd(value: float) -> Decimal:
        return Decimal(str(value))

    assert usd(by_model["gpt-4o-mini"]["cost_usd"]) == Decimal("0.000435")
    assert usd(by_model["o3"]["cost_usd"]) == Decimal("16.80")
    assert usd(by_day["2025-06-09"]["cost_usd"]) == Decimal("14.00")
    assert usd(by_day["2025-06-10"]["cost_usd"]) == Decimal("2.80")
    assert usd(by_model["text-embedding-3-small"]["cost_usd"]) == Decimal("0.001")
    assert usd(by_model["dall-e-3"]["cost_usd"]) == Decimal("0.28")
    assert (
        by_model["in-house-model"]["cost_usd"] == 0 and by_model["in-house-model"]["unpriced_requests"] == 1
    )
    total = api.usage(key, group_by="tier").json()["total"]
    assert usd(total["cost_usd"]) == Decimal("0.000435") + Decimal("16.80") + Decimal("0.001") + Decimal(
        "0.28"
    )
    assert total["unpriced_requests"] == 1


def test_start_and_end_select_jobs_by_the_time_they_finished(api: Api) -> None:
    tenant = _tenant()
    api.add_jobs(
        [row(tenant=tenant, model="gpt-4o-mini", finished=_at(day), prompt=day) for day in (1, 2, 3, 4)]
    )
    key = api.key(tenant)

    body = api.usage(key, start="2025-06-02T00:00:00Z", end="2025-06-04").json()

    assert body["total"]["requests"] == 2 and body["total"]["input_tokens"] == 2 + 3


def test_a_tenant_sees_only_its_own_usage_and_an_admin_sees_every_tenant(api: Api) -> None:
    first, second = _tenant(), _tenant()
    api.add_jobs(
        [
            row(tenant=first, model="gpt-4o-mini", finished=_at(5), prompt=11),
            row(tenant=second, model="gpt-4o-mini", finished=_at(5), prompt=22),
            row(tenant=second, model="gpt-4o-mini", finished=_at(5), prompt=33),
        ]
    )
    window = {"start": "2025-06-05", "end": "2025-06-06"}

    own = api.usage(api.key(first), group_by="tenant", **window).json()
    admin_key = api.key(_tenant(), ("admin",))
    everyone = api.usage(admin_key, group_by="tenant", **window).json()
    narrowed = api.usage(admin_key, group_by="tenant", tenant=second, **window).json()
    refused = api.usage(api.key(first), tenant=second)

    assert [(item["key"], item["input_tokens"]) for item in own["data"]] == [(first, 11)]
    seen = {item["key"]: item["input_tokens"] for item in everyone["data"]}
    assert seen[first] == 11 and seen[second] == 55 and everyone["tenant"] is None
    assert [item["key"] for item in narrowed["data"]] == [second]
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "tenant"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2025-06-02", "end": "2025-06-01"}, "start"),
        ({"end": "0001-01-01T00:00:00+14:00"}, "end"),
    ],
)
def test_bad_parameters_answer_422_naming_them(api: Api, params: dict[str, str], param: str) -> None:
    response = api.usage(api.key(_tenant()), **params)

    assert response.status_code == 422
    assert response.json()["error"]["param"] == param


def test_usage_needs_an_api_key_with_read_scope(api: Api) -> None:
    assert api.client.get("/v1/usage").status_code == 401
    assert api.usage(api.key(_tenant(), ("jobs:write",))).status_code == 403


def test_provider_batch_jobs_cost_the_batch_price_and_are_reported_apart(api: Api) -> None:
    tenant = _tenant()
    api.add_jobs(
        [
            # live: (1000 * 0.15 + 500 * 0.60) / 1e6 = 0.00045
            row(
                tenant=tenant, model="gpt-4o-mini", finished=_at(1), prompt=1000, completion=500, path="live"
            ),
            # the same through the provider's Batch API, half price: 0.000225 (saves 0.000225)
            row(
                tenant=tenant,
                model="gpt-4o-mini",
                finished=_at(1),
                prompt=1000,
                completion=500,
                path="provider_batch",
            ),
            # an explicit batch price: 100_000 * 0.015 / 1e6 = 0.0015 (live 0.002, saves 0.0005)
            row(
                tenant=tenant,
                model="text-embedding-3-small",
                tier="embeddings",
                kind="embedding",
                finished=_at(1),
                prompt=100_000,
                path="provider_batch",
            ),
        ]
    )
    body = api.usage(api.key(tenant), group_by="model").json()
    by_model = {item["key"]: item for item in body["data"]}

    def usd(value: float) -> Decimal:
        return Decimal(str(value))

    mini = by_model["gpt-4o-mini"]
    assert (mini["requests"], mini["batch_requests"]) == (2, 1)
    assert usd(mini["cost_usd"]) == Decimal("0.000675")
    assert usd(mini["batch_cost_usd"]) == Decimal("0.000225") and usd(mini["live_cost_usd"]) == Decimal(
        "0.00045"
    )
    assert usd(mini["savings_usd"]) == Decimal("0.000225")
    embedding = by_model["text-embedding-3-small"]
    assert usd(embedding["batch_cost_usd"]) == Decimal("0.0015") and usd(embedding["savings_usd"]) == Decimal(
        "0.0005"
    )
    total = body["total"]
    assert total["batch_requests"] == 2 and usd(total["savings_usd"]) == Decimal("0.000725")
