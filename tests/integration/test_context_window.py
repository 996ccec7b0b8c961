"""A request that cannot fit its model's context window is refused at submission with 422
``context_length_exceeded`` and the counts, on SQLite and PostgreSQL, and a batch line that cannot fit
fails with the same code and its line number. Nothing is stored for a refused job."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from config.settings import load_settings
from domain.batches.ingest import LineChecker, LineError, RequestLine
from domain.batches.schemas import Endpoint
from domain.jobs.input_limits import InputLimits
from domain.storage.models import Job
from domain.storage.sessions import make_engine
from tests.support.keys import bearer, create_key

pytestmark = pytest.mark.integration

WINDOW = 300
TIERS = f"""
[tiers.small]
concurrency = 4
[tiers.small.models."gpt-4o-mini"]
rpm = 100000
tpm = 100000000
context_window = {WINDOW}
max_output_tokens = 200
"""


@pytest.fixture
def tiers_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiers.toml"
    path.write_text(TIERS, encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


@pytest.fixture
def client(database_url: str, redis_url: str, tiers_file: Path) -> Iterator[TestClient]:
    settings = load_settings(database_url=database_url, redis_url=redis_url, tiers_file=tiers_file)
    key = create_key(database_url, f"window-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings), headers=bearer(key)) as test_client:
        yield test_client


def _chat(words: int, **extra: Any) -> dict[str, Any]:
    content = " ".join(["apple"] * words)
    return {
        "kind": "chat",
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra},
    }


def _stored(database_url: str) -> int:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Job)) or 0)
    finally:
        engine.dispose()


def test_prompt_and_reply_within_the_window_are_accepted(client: TestClient) -> None:
    answer = client.post("/v1/jobs", json=_chat(100, max_tokens=150))
    assert answer.status_code == 202, answer.text


def test_prompt_plus_max_tokens_over_the_window_is_refused_with_the_counts(
    client: TestClient, database_url: str
) -> None:
    before = _stored(database_url)
    answer = client.post("/v1/jobs", json=_chat(200, max_tokens=150))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "request.messages"
    prompt = 3 + 4 + 200  # reply priming, one message's framing, and "apple" is one token each (o200k_base)
    assert f"context window of {WINDOW} tokens" in error["message"]
    assert f"{prompt} prompt tokens" in error["message"] and "150 completion tokens" in error["message"]
    assert _stored(database_url) == before


def test_a_prompt_alone_over_the_window_is_refused_and_max_completion_tokens_counts_too(
    client: TestClient,
) -> None:
    alone = client.post("/v1/jobs", json=_chat(400))
    assert alone.status_code == 422 and alone.json()["error"]["code"] == "context_length_exceeded"
    newer = client.post("/v1/jobs", json=_chat(200, max_completion_tokens=150))
    assert newer.status_code == 422 and newer.json()["error"]["code"] == "context_length_exceeded"


def test_a_batch_line_that_cannot_fit_fails_with_the_code_and_its_line(tiers_file: Path) -> None:
    settings = load_settings(tiers_file=tiers_file)
    checker = LineChecker(
        Endpoint.chat,
        settings.tiers,
        InputLimits.from_settings(settings),
        default_max_tokens=settings.default_max_tokens,
    )
    fits = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": _chat(50)["request"]}
    too_big = {**fits, "custom_id": "b", "body": _chat(200, max_tokens=150)["request"]}
    assert isinstance(checker.check(1, json.dumps(fits).encode()), RequestLine)
    refused = checker.check(2, json.dumps(too_big).encode())
    assert isinstance(refused, LineError)
    assert (refused.code, refused.line, refused.param) == ("context_length_exceeded", 2, "body.messages")
    assert f"context window of {WINDOW} tokens" in refused.message
