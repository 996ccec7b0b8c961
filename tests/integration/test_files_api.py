"""`/v1/files` over HTTP on SQLite and PostgreSQL: streamed upload with its limits, content download,
list, delete and tenant scoping; FileObjects checked against OpenAI's schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.routes import files as files_route
from config.settings import Settings, load_settings
from domain.storage.models import FileChunk, StoredFile
from domain.storage.sessions import session_scope
from tests.factories import chat_request
from tests.support import batches as support
from tests.support.batches import jsonl, request_line, retire_tenant
from tests.support.keys import bearer, create_key
from tests.support.openai_schema import assert_conforms, page_without_nulls, without_nulls

pytestmark = pytest.mark.integration

database_url = support.database_url
sessions = support.sessions
Sessions = sessionmaker[Session]


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        file_max_bytes=64 * 1024,
        batch_max_requests=20,
        max_jsonl_line_bytes=2048,
        max_body_bytes=4096,
    )


@pytest.fixture
def tenant(sessions: Sessions) -> Iterator[str]:
    name = f"files-{uuid.uuid4().hex[:8]}"
    yield name
    retire_tenant(sessions, name)


@pytest.fixture
def client(settings: Settings, database_url: str, tenant: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=bearer(create_key(database_url, tenant))) as test_client:
        yield test_client


def _upload(client: TestClient, data: bytes, name: str = "input.jsonl", **fields: str) -> Any:
    return client.post("/v1/files", files={"file": (name, data)}, data={"purpose": "batch", **fields})


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"code", "message", "param", "type"}
    return dict(body["error"])


def test_an_upload_larger_than_the_json_body_limit_is_stored_in_chunks_and_read_back(
    client: TestClient, sessions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_route, "CHUNK_BYTES", 1000)
    data = jsonl([request_line(f"r{i}", chat_request(prompt="x" * 150)) for i in range(18)])
    assert len(data) > 4096  # over BATCHERY_MAX_BODY_BYTES: uploads have their own limit
    response = _upload(client, data)
    assert response.status_code == 200, response.text
    uploaded = response.json()
    assert uploaded["bytes"] == len(data) and uploaded["filename"] == "input.jsonl"
    assert uploaded["purpose"] == "batch" and uploaded["status"] == "processed"
    assert uploaded["expires_at"] - uploaded["created_at"] == 30 * 24 * 3600
    assert_conforms("OpenAIFile", without_nulls(uploaded))
    assert client.get(f"/v1/files/{uploaded['id']}").json() == uploaded
    content = client.get(f"/v1/files/{uploaded['id']}/content")
    assert content.status_code == 200 and content.content == data
    with session_scope(sessions) as session:
        row = session.get(StoredFile, uploaded["id"])
        assert row is not None and row.line_count == 18
        chunks = session.scalar(select(func.count()).where(FileChunk.file_id == row.id))
        assert chunks == -(-len(data) // 1000)


def test_expires_after_sets_the_expiry(client: TestClient) -> None:
    response = _upload(client, jsonl([request_line("a")]), **{
        "expires_after[anchor]": "created_at",
        "expires_after[seconds]": "7200",
    })  # fmt: skip
    uploaded = response.json()
    assert uploaded["expires_at"] - uploaded["created_at"] == 7200
    bad = _upload(
        client,
        jsonl([request_line("a")]),
        **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "5"},
    )
    assert bad.status_code == 422 and _error(bad)["param"] == "expires_after.seconds"


@pytest.mark.parametrize(
    ("data", "fields", "status", "code"),
    [
        (b"x" * (65 * 1024), {}, 413, "file_too_large"),
        (jsonl([request_line(f"r{i}") for i in range(21)]), {}, 422, "too_many_lines"),
        (
            jsonl([request_line("a", {"model": "gpt-4o-mini", "messages": [], "pad": "x" * 3000})]),
            {},
            422,
            "line_too_large",
        ),
        (b'{"a": 1}\n\xff\n', {}, 422, "invalid_file_encoding"),
        (b"\n\n", {}, 422, "empty_file"),
        (jsonl([request_line("a")]), {"purpose": "fine-tune"}, 422, "invalid_purpose"),
    ],
)
def test_refused_uploads_get_a_clear_error_and_leave_nothing_behind(
    client: TestClient,
    sessions: Any,
    tenant: str,
    data: bytes,
    fields: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = _upload(client, data, **fields)
    assert response.status_code == status, response.text
    assert _error(response)["code"] == code
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).where(StoredFile.tenant_id == tenant)) == 0
        orphans = select(func.count()).where(FileChunk.file_id.not_in(select(StoredFile.id)))
        assert session.scalar(orphans) == 0


def test_malformed_forms_are_refused(client: TestClient) -> None:
    missing_file = client.post("/v1/files", data={"purpose": "batch"}, files={"other": ("x", b"1")})
    assert missing_file.status_code == 422 and _error(missing_file)["param"] == "file"
    missing_purpose = client.post("/v1/files", files={"file": ("a.jsonl", b"{}\n")})
    assert missing_purpose.status_code == 422 and _error(missing_purpose)["param"] == "purpose"
    not_multipart = client.post("/v1/files", json={"purpose": "batch"})
    assert not_multipart.status_code == 422 and _error(not_multipart)["code"] == "invalid_content_type"
    cut_short = client.post(
        "/v1/files",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n{}\n',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert cut_short.status_code == 422 and _error(cut_short)["code"] == "invalid_multipart"


def test_list_paginates_and_delete_removes_the_file_and_its_bytes(client: TestClient, sessions: Any) -> None:
    ids = [_upload(client, jsonl([request_line(str(i))])).json()["id"] for i in range(3)]
    first = client.get("/v1/files", params={"limit": 2}).json()
    assert [item["id"] for item in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    assert_conforms("ListFilesResponse", page_without_nulls(first))
    rest = client.get("/v1/files", params={"limit": 2, "after": first["last_id"]}).json()
    assert [item["id"] for item in rest["data"]] == [ids[0]] and rest["has_more"] is False
    oldest_first = client.get("/v1/files", params={"order": "asc"}).json()
    assert [item["id"] for item in oldest_first["data"]] == ids
    deleted = client.delete(f"/v1/files/{ids[1]}")
    assert deleted.json() == {"id": ids[1], "object": "file", "deleted": True}
    assert_conforms("DeleteFileResponse", deleted.json())
    assert client.get(f"/v1/files/{ids[1]}").status_code == 404
    assert client.get(f"/v1/files/{ids[1]}/content").status_code == 404
    with session_scope(sessions) as session:
        assert session.scalar(select(func.count()).where(FileChunk.file_id == ids[1])) == 0


def test_another_tenant_cannot_see_or_delete_a_file(
    client: TestClient, database_url: str, settings: Settings
) -> None:
    file_id = _upload(client, jsonl([request_line("a")])).json()["id"]
    other = bearer(create_key(database_url, f"other-{uuid.uuid4().hex[:6]}"))
    with TestClient(create_app(settings), headers=other) as stranger:
        for response in (
            stranger.get(f"/v1/files/{file_id}"),
            stranger.get(f"/v1/files/{file_id}/content"),
            stranger.delete(f"/v1/files/{file_id}"),
        ):
            assert response.status_code == 404
        assert stranger.get("/v1/files").json()["data"] == []
    assert client.get(f"/v1/files/{file_id}").status_code == 200
