"""`batchery keys create | list | revoke` against a real SQLite database: the key is printed once, the
listing never shows it, and revocation takes effect on the next check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from cli.main import main
from config.settings import get_settings
from domain.errors import Unauthenticated
from domain.storage.models import ApiKey
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from domain.tenancy import api_keys

pytestmark = pytest.mark.integration


@pytest.fixture
def database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


def _check(database_url: str, key: str) -> api_keys.Principal:
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return api_keys.authenticate(session, key, now=datetime.now(UTC))
    finally:
        engine.dispose()


def test_create_list_revoke(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "keys",
                "create",
                "--tenant",
                "acme",
                "--scopes",
                "jobs:read",
                "batches:read",
                "--expires",
                "30d",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    key = out.strip()
    assert out.count("\n") == 1 and key.startswith("bk_"), out
    assert "shown only this once" in err and key not in err
    principal = _check(database, key)
    assert principal.tenant_id == "acme" and principal.scopes == {"jobs:read", "batches:read"}

    assert main(["keys", "create", "--tenant", "other", "--scopes", "all", "--name", "ops"]) == 0
    other = capsys.readouterr().out.strip()

    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    for column in ("ID", "TENANT", "SCOPES", "CREATED", "LAST_USED", "EXPIRES", "STATE"):
        assert column in listing.splitlines()[0]
    assert key not in listing and other not in listing
    key_id = api_keys.key_id_of(key)
    assert key_id is not None and key_id in listing and "acme" in listing

    assert main(["keys", "list", "--tenant", "acme", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["id"] == key_id and rows[0]["state"] == "active"
    assert rows[0]["scopes"] == "batches:read,jobs:read" and rows[0]["expires"] and rows[0]["last_used"]

    assert main(["keys", "revoke", key_id]) == 0
    assert f"revoked key {key_id}" in capsys.readouterr().out
    with pytest.raises(Unauthenticated):
        _check(database, key)
    assert _check(database, other).tenant_id == "other"
    assert main(["keys", "list", "--tenant", "acme", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "revoked"


def test_only_the_hash_is_stored(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", "acme"]) == 0
    key = capsys.readouterr().out.strip()
    engine = make_engine(database, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            row = session.scalars(select(ApiKey)).one()
            stored = " ".join(str(value) for value in vars(row).values())
    finally:
        engine.dispose()
    assert key not in stored and key.rsplit("_", 1)[1] not in stored
    assert row.key_hash == api_keys.hash_key(key)
    assert row.scopes == "batches:read batches:write jobs:read jobs:write"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["keys", "create", "--tenant", "bad name"], "tenant"),
        (["keys", "create", "--tenant", "acme", "--scopes", "jobs:delete"], "unknown scope"),
        (["keys", "create", "--tenant", "acme", "--expires", "soon"], "--expires"),
        (["keys", "create", "--tenant", "acme", "--expires", "2000-01-01"], "future"),
        (["keys", "revoke", "nosuchkey000"], "no API key"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    database: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_dev_key_is_kept_reused_and_replaced_when_revoked(database: str, tmp_path: Any) -> None:
    from cli.dev_key import ensure_dev_key

    settings = get_settings()
    path = tmp_path / "var" / "dev-api-key"
    first = ensure_dev_key(settings, path)
    assert path.read_text().strip() == first and (path.stat().st_mode & 0o777) == 0o600
    principal = _check(database, first)
    assert principal.tenant_id == "default" and principal.allows("admin")
    assert ensure_dev_key(settings, path) == first
    assert main(["keys", "revoke", api_keys.key_id_of(first) or ""]) == 0
    second = ensure_dev_key(settings, path)
    assert second != first and path.read_text().strip() == second
    assert _check(database, second).tenant_id == "default"
