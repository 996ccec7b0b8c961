"""Tenant B's key, sent to every /v1 route with tenant A's ids, gets exactly what a missing id gets (404),
changes nothing of A's, and B's lists show none of A's objects. The routes are walked from the app, so
a route added later is checked too; a route whose path names an object this test cannot make fails
until a maker is added to MAKERS."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.webhooks import repository as webhook_repository
from tests.factories import chat_request
from tests.support.keys import bearer, create_key
from tests.support.routes import Operation, operations

pytestmark = pytest.mark.integration
HOOK = "http://127.0.0.1:9/hook"


class TenantA:
    """Tenant A's objects, made on first use through the API (or the repository where no route makes them)."""

    def __init__(self, client: TestClient, key: str, database_url: str, tenant: str) -> None:
        self.client, self.key, self.database_url, self.tenant = client, key, database_url, tenant
        self.ids: dict[str, str] = {}

    def id_for(self, param: str) -> str:
        if param not in self.ids:
            maker = MAKERS.get(param)
            if maker is None:
                pytest.fail(f"no way to make tenant A's {param!r}: add a maker to MAKERS in {__name__}")
            self.ids[param] = maker(self)
        return self.ids[param]

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.post(path, headers=bearer(self.key), **kwargs)
        assert response.status_code < 300, response.text
        return dict(response.json())


def _job(a: TenantA) -> str:
    body = {"kind": "chat", "request": chat_request(), "webhook_url": HOOK}
    return str(a.post("/v1/jobs", json=body)["id"])


def _delivery(a: TenantA) -> str:
    engine = make_engine(a.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            delivery = webhook_repository.create_delivery(
                session,
                tenant_id=a.tenant,
                event_id=f"evt_{uuid.uuid4().hex}",
                event_type="job.succeeded",
                subject_id=a.id_for("job_id"),
                url=HOOK,
                payload="{}",
                first_delay=3600,
            )
            return delivery.id
    finally:
        engine.dispose()


def _file(a: TenantA) -> str:
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": chat_request()}
    upload = {"file": ("input.jsonl", json.dumps(line).encode() + b"\n", "application/jsonl")}
    return str(a.post("/v1/files", files=upload, data={"purpose": "batch"})["id"])


def _batch(a: TenantA) -> str:
    body = {
        "input_file_id": a.id_for("file_id"),
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    return str(a.post("/v1/batches", json=body)["id"])


MAKERS: dict[str, Callable[[TenantA], str]] = {
    "job_id": _job,
    "delivery_id": _delivery,
    "file_id": _file,
    "batch_id": _batch,
}
MISSING = {
    "job_id": "job_0000000000zzzzzzzzzzzzzzzz",
    "delivery_id": "whd_0000000000zzzzzzzzzzzzzzzz",
    "file_id": "file-0000000000zzzzzzzzzzzzzzzz",
    "batch_id": "batch_0000000000zzzzzzzzzzzzzzzz",
}
SHARED_PARAMS = {"model"}
"""Path parameters that name the deployment's configuration, the same for every tenant
(``GET /v1/models/{model}``), not a tenant's object."""
ADMIN_PREFIX = "/v1/admin/"
"""Operator routes (spend budgets): they name any tenant by design and need an ``admin`` key, which
``test_api_budgets`` checks; they hold no tenant's objects."""

BODY_REFERENCES: dict[tuple[str, str], Callable[[TenantA], dict[str, Any]]] = {
    ("POST", "/v1/batches"): lambda a: {
        "input_file_id": a.id_for("file_id"),
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    },
}
"""Routes whose body names another object: B naming A's object must get 404 too."""


@pytest.fixture
def world(postgres_url: str, redis_url: str) -> Iterator[tuple[TestClient, TenantA, str]]:
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_url, webhook_allowed_networks="127.0.0.1/32"
    )
    suffix = uuid.uuid4().hex[:8]
    key_a = create_key(postgres_url, f"iso-a-{suffix}")
    key_b = create_key(postgres_url, f"iso-b-{suffix}")
    with TestClient(create_app(settings)) as client:
        yield client, TenantA(client, key_a, postgres_url, f"iso-a-{suffix}"), key_b


def _outcome(response: Any) -> tuple[int, str | None]:
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    error = body.get("error") if isinstance(body, dict) else None
    return response.status_code, (error or {}).get("code")


def test_tenant_b_cannot_reach_tenant_a(world: tuple[TestClient, TenantA, str]) -> None:
    client, a, key_b = world
    ops = [op for op in operations(client.app) if not op.path.startswith(ADMIN_PREFIX)]  # type: ignore[arg-type]
    with_ids = [op for op in ops if set(op.params) - SHARED_PARAMS]
    assert with_ids, "no /v1 route takes an id"
    for op in with_ids:  # make A's objects first, so that every list below has something to leak
        for param in op.params:
            a.id_for(param)
    a_views = _own_views(client, a, with_ids)

    for op in with_ids:
        theirs = client.request(op.method, op.url(a.ids), headers=bearer(key_b))
        missing = client.request(
            op.method, op.url({p: MISSING.get(p, "missing_0") for p in op.params}), headers=bearer(key_b)
        )
        assert _outcome(theirs) == _outcome(missing), (
            f"{op.method} {op.path}: {theirs.text} vs {missing.text}"
        )
        assert theirs.status_code == 404, (
            f"{op.method} {op.path} answered {theirs.status_code}: {theirs.text}"
        )
        for param, secret_id in a.ids.items():  # ids the caller sent may be echoed; no others
            if param not in op.params:
                assert secret_id not in theirs.text, f"{op.method} {op.path} shows {secret_id}"

    for op in ops:
        if op.params or op.method != "GET":
            continue
        own = client.get(op.path, headers=bearer(a.key))
        other = client.get(op.path, headers=bearer(key_b))
        assert own.status_code == other.status_code == 200, (op.path, own.text, other.text)
        leaked = [value for value in a.ids.values() if value in other.text]
        assert not leaked, f"GET {op.path} shows tenant A's {leaked}"

    for (method, path), make_body in BODY_REFERENCES.items():
        if any(op.method == method and op.path == path for op in ops):
            response = client.request(method, path, json=make_body(a), headers=bearer(key_b))
            assert response.status_code == 404, f"{method} {path} with A's ids: {response.text}"

    assert _own_views(client, a, with_ids) == a_views, "tenant B's requests changed tenant A's objects"


def _own_views(client: TestClient, a: TenantA, ops: list[Operation]) -> dict[str, Any]:
    views = {}
    for op in ops:
        if op.method == "GET":
            response = client.get(op.url(a.ids), headers=bearer(a.key))
            assert response.status_code == 200, f"A cannot read its own {op.path}: {response.text}"
            views[op.path] = response.json()
    return views


def test_idempotency_keys_are_per_tenant(world: tuple[TestClient, TenantA, str]) -> None:
    client, a, key_b = world
    payload = {"kind": "chat", "request": chat_request()}
    key = {"idempotency-key": f"same-{uuid.uuid4().hex}"}
    first = client.post("/v1/jobs", json=payload, headers={**bearer(a.key), **key})
    other = client.post(
        "/v1/jobs",
        json={"kind": "chat", "request": chat_request(prompt="b")},
        headers={**bearer(key_b), **key},
    )
    assert first.status_code == other.status_code == 202
    assert first.json()["id"] != other.json()["id"]
    assert "idempotent-replayed" not in other.headers
