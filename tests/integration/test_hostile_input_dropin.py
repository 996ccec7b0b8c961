"""Hostile input to the drop-in OpenAI routes, their headers and the admin budget routes, on SQLite and
on PostgreSQL alike: a NUL, a lone surrogate, deep nesting, a non-finite number or an integer beyond
what a column holds gets a 4xx naming the parameter as the caller sent it, and nothing is stored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration


@dataclass
class Api:
    client: TestClient
    tenant: str
    admin: dict[str, str]


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Api]:
    url = str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))
    settings = load_settings(database_url=url, redis_url=redis_url)
    tenant = f"dropin-{uuid.uuid4().hex[:8]}"
    admin = bearer(create_key(url, f"ops-{uuid.uuid4().hex[:8]}", ["admin"]))
    with TestClient(create_app(settings), headers=bearer(create_key(url, tenant))) as client:
        yield Api(client, tenant, admin)


def _post_raw(api: Api, path: str, text: str, headers: dict[str, str] | None = None) -> Any:
    sent = {"content-type": "application/json", "x-batchery-timeout": "0.2", **(headers or {})}
    return api.client.post(path, content=text.encode("utf-8"), headers=sent)


ROUTES = {
    "/v1/chat/completions": '"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]',
    "/v1/embeddings": '"model": "text-embedding-3-small", "input": "hi"',
    "/v1/images/generations": '"model": "dall-e-3", "prompt": "hi"',
    "/v1/responses": '"model": "gpt-4o-mini", "input": "hi"',
}
HOSTILE_FIELDS = {
    "NUL": (', "user": "a\\u0000b"', "user"),
    "NUL in a key": (', "x\\u0000": 1', "x\\u0000"),
    "lone surrogate": (', "user": "\\ud800"', "user"),
    "nested 300 deep": (', "metadata": ' + "[" * 300 + "]" * 300, "metadata.0.0.0"),
    "NaN": (', "temperature": NaN', "temperature"),
    "Infinity": (', "temperature": -Infinity', "temperature"),
    "1e309": (', "temperature": 1e309', "temperature"),
    "2^64": (', "seed": 18446744073709551616', "seed"),
    "max_tokens 2^31": (', "max_tokens": 2147483648', "max_tokens"),
}


def _stored(api: Api) -> list[Any]:
    listed = api.client.get("/v1/jobs")
    assert listed.status_code == 200, listed.text
    return list(listed.json()["data"])


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_hostile_drop_in_body_gets_4xx_naming_the_parameter_and_stores_nothing(
    api: Api, route: str
) -> None:
    for case, (extra, param) in HOSTILE_FIELDS.items():
        response = _post_raw(api, route, "{" + ROUTES[route] + extra + "}")
        assert 400 <= response.status_code < 500, (case, response.text)
        error = response.json()["error"]
        assert error["code"] in ("invalid_request", "max_tokens_too_large"), (case, error)
        assert error["param"].startswith(param), (case, error)
    for depth in (300, 5000):  # past the nesting limit, then past the JSON parser's own depth
        response = _post_raw(api, route, '{"a": ' * depth + "1" + "}" * depth)
        assert response.status_code in (400, 422), response.text
    assert _stored(api) == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-batchery-timeout", "nan"),
        ("x-batchery-timeout", "inf"),
        ("x-batchery-timeout", "Infinity"),
        ("x-batchery-timeout", "-1"),
        ("x-batchery-timeout", "soon"),
        ("x-batchery-priority", "2147483648"),
        ("x-batchery-priority", "99999999999999999999999999"),
        ("x-batchery-priority", "1e309"),
        ("x-batchery-priority", "NaN"),
        ("idempotency-key", "k" * 256),
        ("x-batchery-cancel-on-disconnect", "maybe"),
    ],
)
def test_a_garbage_drop_in_header_gets_422_naming_it_and_stores_nothing(
    api: Api, header: str, value: str
) -> None:
    response = _post_raw(
        api, "/v1/chat/completions", "{" + ROUTES["/v1/chat/completions"] + "}", {header: value}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] | {"message": None} == {
        "code": "invalid_request",
        "param": header,
        "message": None,
        "type": "invalid_request_error",
    }
    assert _stored(api) == []


HOSTILE_BUDGETS = {
    "NaN": ('{"usd_per_day": NaN}', "usd_per_day"),
    "Infinity": ('{"usd_per_month": Infinity}', "usd_per_month"),
    "1e309": ('{"usd_per_day": 1e309}', "usd_per_day"),
    "string NaN": ('{"usd_per_day": "NaN"}', "usd_per_day"),
    "2^64 tokens": ('{"tokens_per_day": 18446744073709551616}', "tokens_per_day"),
    "2^63 tokens": ('{"tokens_per_month": 9223372036854775808}', "tokens_per_month"),
    "NUL": ('{"usd_per_day": "1\\u0000"}', "usd_per_day"),
    "lone surrogate": ('{"usd_per_day": "\\ud800"}', "usd_per_day"),
    "nested 300 deep": ('{"usd_per_day": ' + '{"a": ' * 300 + "1" + "}" * 300 + "}", "usd_per_day"),
    "NUL in a key": ('{"x\\u0000": 1}', "x\\u0000"),
}


def test_hostile_budgets_get_422_naming_the_field_and_store_nothing(api: Api) -> None:
    for case, (text, param) in HOSTILE_BUDGETS.items():
        for path in (f"/v1/admin/budgets/{api.tenant}", f"/v1/admin/budgets/{api.tenant}/keys/nosuchkey"):
            sent = {**api.admin, "content-type": "application/json"}
            response = api.client.put(path, content=text.encode(), headers=sent)
            assert response.status_code == 422, (case, response.text)
            assert response.json()["error"]["param"] == param, (case, response.text)
    for path in ("/v1/admin/budgets/a%00b", f"/v1/admin/budgets/{api.tenant}/keys/k%00"):
        assert api.client.put(path, json={"usd_per_day": 1}, headers=api.admin).status_code == 400
    for path in ("/v1/admin/budgets/%ED%A0%80", "/v1/admin/budgets/" + "t" * 65):
        assert api.client.put(path, json={"usd_per_day": 1}, headers=api.admin).status_code == 422
    listed = api.client.get(f"/v1/admin/budgets?tenant={api.tenant}", headers=api.admin)
    assert listed.status_code == 200 and listed.json()["data"] == []
