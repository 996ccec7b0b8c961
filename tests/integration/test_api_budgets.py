"""Budgets over HTTP on SQLite and PostgreSQL (real Redis, no worker): the admin API needs an admin
key; over a budget ``POST /v1/jobs``, ``/v1/jobs/bulk``, ``/v1/batches`` and the drop-in endpoints
answer 429 ``budget_exceeded`` in OpenAI's error shape and store nothing; unpriced models are refused
under a USD limit unless allowed; ``/metrics`` and ``batchery budgets`` show the spend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from cli.main import main
from config.settings import get_settings, load_settings
from tests.factories import chat_request
from tests.support.batches import jsonl, request_line
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration

PRICES = """
[[models."gpt-4o-mini"]]
effective = 2024-07-18
input = 0.15
output = 0.60
"""
# A chat job asking for 1000 output tokens of gpt-4o-mini reserves a little over $0.0006.
JOB = {"kind": "chat", "request": chat_request(max_tokens=1000)}


@dataclass
class Api:
    client: TestClient
    url: str
    tenant: str
    key: dict[str, str]
    admin: dict[str, str]

    def put(self, path: str = "", **limits: Any) -> Any:
        return self.client.put(f"/v1/admin/budgets/{self.tenant}{path}", json=limits, headers=self.admin)


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[Api]:
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES)
    settings = load_settings(database_url=url, redis_url=redis_url, prices_file=prices)
    tenant = f"spend-{uuid.uuid4().hex[:8]}"
    key = bearer(create_key(url, tenant, ["jobs:read", "jobs:write", "batches:read", "batches:write"]))
    admin = bearer(create_key(url, "operators", ["admin"]))
    with TestClient(create_app(settings)) as client:
        yield Api(client, url, tenant, key, admin)


def _refused(response: Any, status: int = 429, code: str = "budget_exceeded") -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "param", "type"} and error["code"] == code, error
    return dict(error)


def test_the_admin_api_needs_an_admin_key(api: Api) -> None:
    path = f"/v1/admin/budgets/{api.tenant}"
    _refused(api.client.put(path, json={"usd_per_day": 1}), 401, "missing_api_key")
    _refused(api.client.put(path, json={"usd_per_day": 1}, headers=api.key), 403, "insufficient_scope")
    _refused(api.client.get("/v1/admin/budgets", headers=api.key), 403, "insufficient_scope")
    _refused(api.put(usd_per_day=-1), 422, "invalid_request")
    _refused(api.put(usd_per_day=1, per_fortnight=3), 422, "invalid_request")
    _refused(api.client.get(path, headers=api.admin), 404, "not_found")


def test_no_budget_means_no_limit(api: Api) -> None:
    assert api.client.post("/v1/jobs", json=JOB, headers=api.key).status_code == 202


def test_over_budget_a_job_is_refused_with_limit_spend_and_reset_and_nothing_is_stored(api: Api) -> None:
    budget = api.put(usd_per_day="0.001", tokens_per_month=1_000_000)
    assert budget.status_code == 200, budget.text
    shown = budget.json()
    assert shown["usd_per_day"] == 0.001 and shown["key_id"] is None
    assert [period["period"] for period in shown["periods"]] == ["day", "month"]
    assert api.client.post("/v1/jobs", json=JOB, headers=api.key).status_code == 202
    refused = api.client.post("/v1/jobs", json=JOB, headers=api.key)
    error = _refused(refused)
    assert error["type"] == "invalid_request_error"
    assert "daily USD budget" in error["message"] and "limit $0.001" in error["message"]
    assert "reserved $0.0006" in error["message"] and "resets at " in error["message"]
    assert refused.headers["x-budget-reset"].endswith("T00:00:00Z")
    assert int(refused.headers["retry-after"]) >= 1
    assert len(api.client.get("/v1/jobs", headers=api.key).json()["data"]) == 1
    day = api.client.get(f"/v1/admin/budgets/{api.tenant}", headers=api.admin).json()["periods"][0]
    assert 0.0006 < day["reserved_usd"] < 0.0007 and day["spent_usd"] == 0


def test_a_bulk_request_over_budget_is_refused_as_a_whole(api: Api) -> None:
    api.put(usd_per_day="0.0015")  # room for two of the three jobs
    answer = api.client.post("/v1/jobs/bulk", json={"jobs": [JOB, JOB, JOB]}, headers=api.key)
    _refused(answer)
    assert api.client.get("/v1/jobs", headers=api.key).json()["data"] == []
    accepted = api.client.post("/v1/jobs/bulk", json={"jobs": [JOB, JOB]}, headers=api.key)
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 2


def test_a_batch_over_budget_is_refused_before_it_is_stored(api: Api) -> None:
    api.put(tokens_per_day=2500)  # each line reserves its prompt plus 1000 output tokens
    lines = [request_line(f"r{i}", chat_request(max_tokens=1000)) for i in range(3)]
    uploaded = api.client.post(
        "/v1/files", files={"file": ("in.jsonl", jsonl(lines))}, data={"purpose": "batch"}, headers=api.key
    )
    body = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    error = _refused(api.client.post("/v1/batches", json=body, headers=api.key))
    assert "daily token budget" in error["message"] and "limit 2500 tokens" in error["message"]
    assert api.client.get("/v1/batches", headers=api.key).json()["data"] == []
    api.put(tokens_per_day=5000)
    created = api.client.post("/v1/batches", json=body, headers=api.key)
    assert created.status_code == 200, created.text


def test_the_drop_in_endpoints_meet_the_same_budget(api: Api) -> None:
    api.put(usd_per_month="0.0001")
    error = _refused(
        api.client.post("/v1/chat/completions", json=chat_request(max_tokens=1000), headers=api.key)
    )
    assert "monthly USD budget" in error["message"]


def test_an_unpriced_model_is_refused_under_a_usd_limit_unless_the_budget_allows_it(api: Api) -> None:
    api.put(usd_per_day=5)
    unpriced = {"kind": "chat", "request": chat_request(model="gpt-4o")}  # no price in this table
    error = _refused(api.client.post("/v1/jobs", json=unpriced, headers=api.key), 422, "unpriced_model")
    assert "'gpt-4o' has no price" in error["message"]
    api.put(usd_per_day=5, allow_unpriced=True)
    assert api.client.post("/v1/jobs", json=unpriced, headers=api.key).status_code == 202


def test_a_key_budget_limits_that_key_alone(api: Api) -> None:
    other = bearer(create_key(api.url, api.tenant, ["jobs:write", "jobs:read"]))
    key_id = api.key["authorization"].split("_")[1]
    assert api.put(f"/keys/{key_id}", usd_per_day="0.0001").status_code == 200
    _refused(api.client.post("/v1/jobs", json=JOB, headers=api.key))
    assert api.client.post("/v1/jobs", json=JOB, headers=other).status_code == 202
    _refused(api.put("/keys/nosuchkey000", usd_per_day=1), 404, "not_found")


def test_metrics_show_each_budget_against_its_limit(api: Api) -> None:
    api.put(usd_per_day=2, tokens_per_month=10_000)
    api.client.post("/v1/jobs", json=JOB, headers=api.key)
    text = api.client.get("/metrics").text
    labels = f'key="*",period="day",tenant="{api.tenant}"'
    assert f"batchery_budget_limit_usd{{{labels}}} 2.0" in text
    assert f"batchery_budget_spent_usd{{{labels}}} 0.0" in text
    month = f'key="*",period="month",tenant="{api.tenant}"'
    assert f"batchery_budget_limit_tokens{{{month}}} 10000.0" in text
    reserved = [
        line for line in text.splitlines() if line.startswith(f"batchery_budget_reserved_tokens{{{month}")
    ]
    assert len(reserved) == 1 and float(reserved[0].split()[-1]) > 1000


def test_the_cli_sets_shows_and_clears_budgets(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", api.url)
    get_settings.cache_clear()
    try:
        assert (
            main(
                [
                    "budgets",
                    "set",
                    "--tenant",
                    api.tenant,
                    "--usd-per-month",
                    "25",
                    "--tokens-per-day",
                    "5000",
                ]
            )
            == 0
        )
        assert "budget set for tenant" in capsys.readouterr().out
        assert main(["budgets", "show", "--tenant", api.tenant]) == 0
        shown = capsys.readouterr().out
        assert api.tenant in shown and "$0.00 + $0.00 / $25.00" in shown and "0 + 0 / 5,000" in shown
        assert (
            main(["budgets", "set", "--tenant", api.tenant, "--key", "nosuchkey000", "--usd-per-day", "1"])
            == 2
        )
        assert "has no API key" in capsys.readouterr().err
        assert main(["budgets", "clear", "--tenant", api.tenant]) == 0
        assert main(["budgets", "show", "--tenant", api.tenant]) == 0
        assert "no budgets are set" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()
