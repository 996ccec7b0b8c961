"""``batchery top --once`` as a real command against real Redis and SQLite: every tier, with its queue,
in-flight jobs, the last minute's use against the limits, 429s, errors, and a paused bucket."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.tiers import load_tiers
from domain.jobs import repository
from domain.jobs.execution import ExecutionPath
from domain.metrics.catalog import BATCH_SAVINGS
from domain.metrics.store import MetricBatch, MetricStore
from domain.storage.models import utcnow
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from testbed.processes import ROOT, base_env, batchery
from tests.factories import new_job
from workers.buckets import Budget
from workers.limiter import RedisLimiter

pytestmark = pytest.mark.integration


def _tiers(path: Path, names: list[str]) -> Path:
    models = ["gpt-4o-mini", "text-embedding-3-small", "dall-e-3"]
    path.write_text(
        "".join(
            f'[tiers.{name}]\n[tiers.{name}.models."{model}"]\nrpm = 100\ntpm = 10000\n'
            for name, model in zip(names, models, strict=True)
        )
    )
    return path


@pytest.fixture
def names() -> list[str]:
    suffix = uuid.uuid4().hex[:6]
    return [f"chat-{suffix}", f"embed-{suffix}", f"images-{suffix}"]


@pytest.fixture
def client(redis_url: str, names: list[str]) -> Iterator[redis.Redis[bytes]]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.delete(*(f"tier.{name}" for name in names), *client.keys("top-test-*"))
    client.close()


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


def test_top_once_shows_every_tier_with_its_figures(
    sqlite_url: str, redis_url: str, tmp_path: Path, names: list[str], client: redis.Redis[bytes]
) -> None:
    chat, embed, images = names
    prefix = f"top-test-{uuid.uuid4().hex[:8]}"
    tiers_file = _tiers(tmp_path / "tiers.toml", names)
    client.lpush(f"tier.{chat}", *[b"{}"] * 3)
    engine = make_engine(sqlite_url)
    with session_scope(make_session_factory(engine)) as session:
        job, _ = repository.create_job(session, new_job(tier=chat))
        repository.claim(session, job.id, owner="test", lease_seconds=60)
        deferred = new_job(tier=chat, execution_path=ExecutionPath.provider_batch, deadline_at=utcnow())
        repository.create_job(session, deferred)
    engine.dispose()
    batch = MetricBatch()
    for name, amount in (("requests", 30), ("tokens", 2500), ("429", 2), ("errors", 1), ("waits", 4)):
        batch.add_window(chat, "gpt-4o-mini", name, amount)
    batch.add_window(chat, "gpt-4o-mini", "wait_us", 4 * 250_000)
    batch.count(BATCH_SAVINGS, (chat, "gpt-4o-mini"), 12.5)
    MetricStore(client, prefix).write(batch, now=time.time())
    limits = load_tiers(tiers_file).tiers[images].models["dall-e-3"]
    RedisLimiter(client, prefix=prefix).pause(Budget.for_model(images, "dall-e-3", limits, 1.0), 60.0)
    env = base_env(
        DATABASE_URL=sqlite_url,
        REDIS_URL=redis_url,
        BATCHERY_REDIS_PREFIX=prefix,
        BATCHERY_TIERS_FILE=str(tiers_file),
        COLUMNS="200",
    )

    done = subprocess.run(
        batchery("top", "--once"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert {chat, embed, images} <= set(rows), done.stdout
    queue, backlog, in_flight, rpm, tpm, wait, rate_limited, errors, failed = rows[chat]
    assert (queue, backlog, in_flight) == ("3", "0", "1")
    assert rpm.split() == ["30/100", "30%"] and tpm.split() == ["2.5k/10k", "25%"]
    assert (wait, rate_limited, errors, failed) == ("250", "2", "1", "0")
    assert rows[embed][:3] == ["0", "0", "0"]
    assert any(name.startswith("dall-e-3 paused") for name in rows), done.stdout
    caption = "provider batches in flight: 0, deferred jobs: 1, saved by the Batch API: $12.50"
    assert caption in done.stdout
