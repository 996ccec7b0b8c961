"""``/metrics`` against real Redis and SQLite: counters written by any process, gauges read at scrape,
histograms in Prometheus' shape, and nothing unbounded in the labels."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api.main import create_app
from config.settings import Settings, load_settings
from domain.metrics import catalog
from domain.metrics.store import MetricBatch, MetricStore, record_webhook_delivery
from domain.storage.models import Job
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from tests.factories import chat_request, embedding_request

pytestmark = pytest.mark.integration


@dataclass
class Deployment:
    client: TestClient
    settings: Settings
    redis: redis.Redis[bytes]
    chat_tier: str
    embedding_tier: str

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = self.client.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }


def _tiers_file(path: Path, chat_tier: str, embedding_tier: str) -> Path:
    path.write_text(
        f'[tiers.{chat_tier}]\n[tiers.{chat_tier}.models."gpt-4o-mini"]\nrpm = 100\ntpm = 10000\n'
        f'[tiers.{embedding_tier}]\n[tiers.{embedding_tier}.models."text-embedding-3-small"]\nrpm = 100\n'
    )
    return path


@pytest.fixture
def deployment(sqlite_url: str, redis_url: str, tmp_path: Path) -> Iterator[Deployment]:
    suffix = uuid.uuid4().hex[:8]
    chat_tier, embedding_tier = f"chat-{suffix}", f"embed-{suffix}"
    settings = load_settings(
        database_url=sqlite_url,
        redis_url=redis_url,
        redis_prefix=f"metrics-test-{suffix}",
        tiers_file=_tiers_file(tmp_path / "tiers.toml", chat_tier, embedding_tier),
        auth_disabled=True,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        with TestClient(create_app(settings)) as test_client:
            yield Deployment(test_client, settings, client, chat_tier, embedding_tier)
    finally:
        keys = [f"tier.{chat_tier}", f"tier.{embedding_tier}", *client.keys(f"{settings.redis_prefix}:*")]
        client.delete(*keys)
        client.close()


def _labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def test_every_family_is_exported_before_anything_happened(deployment: Deployment) -> None:
    text = deployment.client.get("/metrics").text

    for family in (*catalog.STORED_FAMILIES, *catalog.SCRAPE_FAMILIES):
        assert f"# TYPE {family.name}" in text, family.name


def test_submissions_cancellations_and_gauges_follow_the_jobs(deployment: Deployment) -> None:
    api = deployment.client
    chat = [api.post("/v1/jobs", json={"kind": "chat", "request": chat_request()}).json() for _ in range(2)]
    api.post("/v1/jobs", json={"kind": "embedding", "request": embedding_request()})
    api.post(f"/v1/jobs/{chat[0]['id']}/cancel")
    engine = make_engine(deployment.settings.database_url)
    with session_scope(make_session_factory(engine)) as session:
        session.execute(update(Job).where(Job.id == chat[1]["id"]).values(status="running"))
    engine.dispose()

    samples = deployment.scrape()

    chat_tier, embed_tier = deployment.chat_tier, deployment.embedding_tier
    submitted = "batchery_jobs_submitted_total"
    assert samples[(submitted, _labels(tier=chat_tier, kind="chat", model="gpt-4o-mini"))] == 2
    assert (
        samples[(submitted, _labels(tier=embed_tier, kind="embedding", model="text-embedding-3-small"))] == 1
    )
    cancelled = _labels(tier=chat_tier, kind="chat", model="gpt-4o-mini", status="cancelled")
    assert samples[("batchery_jobs_finished_total", cancelled)] == 1
    assert samples[("batchery_queue_depth", _labels(tier=chat_tier))] == 2  # a cancelled job's message stays
    assert samples[("batchery_queue_depth", _labels(tier=embed_tier))] == 1
    assert samples[("batchery_jobs_in_flight", _labels(tier=chat_tier))] == 1
    assert samples[("batchery_backlog_jobs", _labels(tier=chat_tier))] == 0
    assert samples[("batchery_backlog_jobs", _labels(tier=embed_tier))] == 1
    body = api.get("/metrics").text
    assert all(job["id"] not in body for job in chat)


def test_histograms_are_cumulative_and_counters_add_up_across_writers(deployment: Deployment) -> None:
    prefix = deployment.settings.redis_prefix
    labels = (deployment.chat_tier, "gpt-4o-mini")
    for latency in (0.04, 0.3, 0.3, 500.0):  # as if written by four worker processes
        batch = MetricBatch()
        batch.observe(catalog.UPSTREAM_LATENCY, labels, latency)
        batch.count(catalog.COST, labels, 0.25)
        MetricStore(deployment.redis, prefix).write(batch, now=0.0)
    record_webhook_delivery(deployment.redis, "succeeded", prefix=prefix)
    record_webhook_delivery(deployment.redis, "https://example.com/hook?token=x", prefix=prefix)

    samples = deployment.scrape()

    tier = deployment.chat_tier
    series = _labels(tier=tier, model="gpt-4o-mini")
    name = "batchery_upstream_latency_seconds"
    assert samples[(f"{name}_bucket", _labels(tier=tier, model="gpt-4o-mini", le="0.05"))] == 1
    assert samples[(f"{name}_bucket", _labels(tier=tier, model="gpt-4o-mini", le="0.5"))] == 3
    assert samples[(f"{name}_bucket", _labels(tier=tier, model="gpt-4o-mini", le="+Inf"))] == 4
    assert samples[(f"{name}_count", series)] == 4
    assert samples[(f"{name}_sum", series)] == pytest.approx(500.64)
    assert samples[("batchery_cost_usd_total", series)] == 1.0
    assert samples[("batchery_webhook_deliveries_total", _labels(outcome="succeeded"))] == 1
    assert samples[("batchery_webhook_deliveries_total", _labels(outcome="other"))] == 1


def test_window_sums_cover_the_last_minute(deployment: Deployment) -> None:
    store = MetricStore(deployment.redis, deployment.settings.redis_prefix)
    for moment in (1000.0, 1035.0, 1061.0, 1069.0):
        batch = MetricBatch()
        batch.add_window(deployment.chat_tier, "gpt-4o-mini", "requests", 10)
        store.write(batch, now=moment)

    window = store.window(now=1075.0)

    # 10-second slots: at 1075 the slots from [1020, 1030) to [1070, 1080) count whole and [1010, 1020)
    # counts for half; the write at 1000 is older than a minute.
    assert window[(deployment.chat_tier, "gpt-4o-mini", "requests")] == 30


def test_metrics_answer_503_when_redis_is_down(sqlite_url: str) -> None:
    settings = load_settings(database_url=sqlite_url, redis_url="redis://127.0.0.1:1/0", auth_disabled=True)
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
