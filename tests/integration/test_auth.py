"""Authentication and scopes against real PostgreSQL (and SQLite for the key store): 401 for a missing,
invalid, revoked or expired key, 403 for a missing scope, every /v1 route guarded, and the switch
that turns authentication off."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import load_settings
from domain.errors import Unauthenticated
from domain.storage.models import ApiKey
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tenancy import api_keys
from tests.factories import chat_request
from tests.support.keys import bearer, create_key
from tests.support.routes import operations

pytestmark = pytest.mark.integration


@pytest.fixture
def app_client(postgres_url: str, redis_url: str) -> Iterator[TestClient]:
    settings = load_settings(database_url=postgres_url, redis_url=redis_url)
    with TestClient(create_app(settings)) as client:
        yield client


def _tenant() -> str:
    return f"auth-{uuid.uuid4().hex[:8]}"


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "param", "type"}
    return dict(body["error"])


def test_missing_and_invalid_keys_get_401(app_client: TestClient, postgres_url: str) -> None:
    missing = app_client.get("/v1/jobs")
    error = _error(missing, 401)
    assert error["code"] == "missing_api_key" and error["type"] == "authentication_error"
    assert missing.headers["www-authenticate"] == "Bearer"
    real = create_key(postgres_url, _tenant())
    wrong_secret = real[:-1] + ("a" if real[-1] != "a" else "b")
    for presented in ("nonsense", "bk_" + "0" * 12 + "_" + "0" * 40, wrong_secret, real.upper()):
        error = _error(app_client.get("/v1/jobs", headers=bearer(presented)), 401)
        assert error["code"] == "invalid_api_key"
        assert presented not in error["message"]
    assert _error(app_client.get("/v1/jobs", headers={"authorization": f"Basic {real}"}), 401)
    assert app_client.get("/v1/jobs", headers=bearer(real)).status_code == 200


def test_revoked_key_stops_working_at_once(app_client: TestClient, postgres_url: str) -> None:
    key = create_key(postgres_url, _tenant())
    assert app_client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    engine = make_engine(postgres_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            api_keys.revoke_key(session, api_keys.key_id_of(key) or "")
    finally:
        engine.dispose()
    assert _error(app_client.get("/v1/jobs", headers=bearer(key)), 401)["code"] == "api_key_revoked"


def test_expired_key_gets_401(app_client: TestClient, postgres_url: str) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    key = create_key(postgres_url, _tenant(), expires_at=soon)
    assert app_client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    engine = make_engine(postgres_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            row = session.get(ApiKey, api_keys.key_id_of(key))
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    finally:
        engine.dispose()
    assert _error(app_client.get("/v1/jobs", headers=bearer(key)), 401)["code"] == "api_key_expired"


def test_missing_scope_gets_403(app_client: TestClient, postgres_url: str) -> None:
    tenant = _tenant()
    reader = create_key(postgres_url, tenant, scopes=["jobs:read"])
    writer = create_key(postgres_url, tenant, scopes=["jobs:write"])
    batches_only = create_key(postgres_url, tenant, scopes=["batches:read", "batches:write"])
    payload = {"kind": "chat", "request": chat_request()}
    error = _error(app_client.post("/v1/jobs", json=payload, headers=bearer(reader)), 403)
    assert error["code"] == "insufficient_scope" and error["type"] == "permission_error"
    assert "jobs:write" in error["message"]
    job = app_client.post("/v1/jobs", json=payload, headers=bearer(writer))
    assert job.status_code == 202
    assert app_client.get(f"/v1/jobs/{job.json()['id']}", headers=bearer(reader)).status_code == 200
    assert _error(app_client.get(f"/v1/jobs/{job.json()['id']}", headers=bearer(writer)), 403)
    assert _error(app_client.get("/v1/jobs", headers=bearer(batches_only)), 403)
    assert _error(app_client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=bearer(reader)), 403)


def test_every_v1_route_requires_a_key(app_client: TestClient) -> None:
    """Walks the routes the app really has, so a route added later is covered too."""
    found = operations(app_client.app)  # type: ignore[arg-type]
    assert {("POST", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}")} <= {(op.method, op.path) for op in found}
    for op in found:
        response = app_client.request(op.method, op.url(dict.fromkeys(op.params, "x_1")))
        assert response.status_code == 401, f"{op.method} {op.path} answered {response.status_code}"
        assert response.json()["error"]["code"] == "missing_api_key"


def test_openapi_declares_bearer_auth_and_its_errors(app_client: TestClient) -> None:
    schema = app_client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert any(scheme.get("scheme", "").lower() == "bearer" for scheme in schemes.values())
    assert "429" in schema["paths"]["/v1/jobs"]["post"]["responses"]
    for path, operations_ in schema["paths"].items():
        for method, operation in operations_.items():
            if path.startswith("/v1"):
                assert operation.get("security"), f"{method} {path} declares no auth"
                assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"
            assert {"400", "413", "414"} <= set(operation["responses"]), f"{method} {path}"


def test_last_used_is_written_at_most_once_a_minute(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url, pool_size=1)
    sessions = make_session_factory(engine)
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    try:
        with session_scope(sessions) as session:
            issued = api_keys.create_key(session, tenant_id="t", now=start - timedelta(days=1))

        def use(at: datetime) -> datetime | None:
            with session_scope(sessions) as session:
                principal = api_keys.authenticate(session, issued.key, now=at)
                assert principal.tenant_id == "t" and principal.key_id == issued.id
            with session_scope(sessions) as session:
                row = session.get(ApiKey, issued.id)
                assert row is not None
                used = row.last_used_at
                return used.replace(tzinfo=UTC) if used is not None and used.tzinfo is None else used

        assert use(start) == start
        assert use(start + timedelta(seconds=59)) == start
        assert use(start + timedelta(seconds=61)) == start + timedelta(seconds=61)
        with session_scope(sessions) as session:
            api_keys.revoke_key(session, issued.id, now=start + timedelta(seconds=62))
        with session_scope(sessions) as session, pytest.raises(Unauthenticated):
            api_keys.authenticate(session, issued.key, now=start + timedelta(seconds=63))
    finally:
        engine.dispose()


def test_auth_disabled_serves_the_default_tenant_and_warns(
    postgres_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(database_url=postgres_url, redis_url=redis_url, auth_disabled=True)
    with caplog.at_level(logging.WARNING, logger="api.auth"):
        app = create_app(settings)
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    with TestClient(app) as client:
        job = client.post("/v1/jobs", json={"kind": "chat", "request": chat_request()})
        assert job.status_code == 202
        with_default_key = client.get(f"/v1/jobs/{job.json()['id']}")
        assert with_default_key.status_code == 200
    quiet = load_settings(database_url=postgres_url, redis_url=redis_url)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="api.auth"):
        create_app(quiet)
    assert "AUTHENTICATION IS DISABLED" not in caplog.text


def test_request_url_length_is_capped(app_client: TestClient, postgres_url: str) -> None:
    key = create_key(postgres_url, _tenant())
    response = app_client.get("/v1/jobs", params={"after": "x" * 3000}, headers=bearer(key))
    assert _error(response, 414)["code"] == "uri_too_long"
