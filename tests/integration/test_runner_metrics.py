"""The runner reports each call to the open job trace: a real JobRunner on SQLite, an upstream that
answers through ``httpx.MockTransport``, and the metrics the run would write."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from config.prices import load_prices
from config.settings import Settings, load_settings
from domain.jobs import repository
from domain.metrics import catalog
from domain.metrics.store import SEP, MetricBatch
from domain.storage.sessions import make_engine, make_session_factory, session_scope
from tests.factories import new_job
from workers.run_metrics import JobMetrics
from workers.runner import JobRunner

pytestmark = pytest.mark.integration


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[MetricBatch] = []

    def write(self, batch: MetricBatch, now: float) -> None:
        self.batches.append(batch)


def _job_metrics(store: FakeStore, settings: Settings) -> JobMetrics:
    """The job metrics a worker keeps, writing to ``store``, on a fixed clock."""
    return JobMetrics(
        store,  # type: ignore[arg-type]
        settings.tiers,
        load_prices(settings.prices_file),
        clock=lambda: datetime(2025, 7, 1, tzinfo=UTC).timestamp(),
    )


def _key(family: catalog.Family, *labels: str) -> str:
    return SEP.join((family.name, *labels))


def test_a_503_then_a_success_is_two_calls_one_retry_and_the_usage(sqlite_url: str) -> None:
    settings = load_settings(
        database_url=sqlite_url, openai_base_url="http://upstream.test/v1", openai_api_key="sk-test-runner"
    )
    answers = [
        httpx.Response(503, json={"error": {"message": "busy", "type": "server_error"}}),
        httpx.Response(
            200,
            json={
                "object": "chat.completion",
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            },
        ),
    ]
    client = httpx.Client(transport=httpx.MockTransport(lambda request: answers.pop(0)))
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        job, _ = repository.create_job(session, new_job())
    runner = JobRunner(settings, sessions, client, None, worker_id="test", sleep=lambda seconds: None)
    store = FakeStore()
    metrics = _job_metrics(store, settings)

    try:
        outcome = metrics.run(job.id, runner.run)
    finally:
        runner.close()
        engine.dispose()
        client.close()

    assert outcome == "succeeded"
    counters = dict(store.batches[0].counters)
    assert counters[_key(catalog.UPSTREAM_REQUESTS, "standard", "gpt-4o-mini", "5xx")] == 1
    assert counters[_key(catalog.UPSTREAM_REQUESTS, "standard", "gpt-4o-mini", "ok")] == 1
    assert counters[_key(catalog.RETRIES, "standard", "gpt-4o-mini", "5xx")] == 1
    assert counters[_key(catalog.TOKENS, "standard", "gpt-4o-mini", "input")] == 7
    assert counters[_key(catalog.TOKENS, "standard", "gpt-4o-mini", "output")] == 3
    assert counters[_key(catalog.JOBS_FINISHED, "standard", "chat", "gpt-4o-mini", "succeeded")] == 1


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("answer", "stored_fields"),
    [
        (httpx.Response(200, json={"object": "chat.completion", "usage": {"total_tokens": 4}}), "result"),
        (httpx.Response(400, json={"error": {"message": "bad", "type": "invalid_request_error"}}), "error"),
    ],
    ids=["success", "permanent-error"],
)
def test_a_cancel_requested_during_the_call_is_counted_as_cancelled(
    request: pytest.FixtureRequest, database: str, answer: httpx.Response, stored_fields: str
) -> None:
    url = request.getfixturevalue("sqlite_url" if database == "sqlite" else "postgres_url")
    settings = load_settings(
        database_url=url, openai_base_url="http://upstream.test/v1", openai_api_key="sk-test-runner"
    )
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        job, _ = repository.create_job(session, new_job())

    def upstream(call: httpx.Request) -> httpx.Response:
        with session_scope(sessions) as session:  # the caller cancels while the call runs
            assert repository.cancel_job(session, job.id, tenant_id=job.tenant_id).status == "running"
        return answer

    client = httpx.Client(transport=httpx.MockTransport(upstream))
    runner = JobRunner(settings, sessions, client, None, worker_id="test", sleep=lambda seconds: None)
    store = FakeStore()
    metrics = _job_metrics(store, settings)
    try:
        outcome = metrics.run(job.id, runner.run)
        with session_scope(sessions) as session:
            row = repository.get_job(session, job.id, tenant_id="default")
            status, kept = row.status, row.result if stored_fields == "result" else row.error_type
    finally:
        runner.close()
        engine.dispose()
        client.close()

    assert outcome == "cancelled"
    assert status == "cancelled" and kept  # the call's result (or error) is kept on the cancelled job
    counters = dict(store.batches[0].counters)
    finished = {key: value for key, value in counters.items() if key.startswith(catalog.JOBS_FINISHED.name)}
    assert finished == {_key(catalog.JOBS_FINISHED, "standard", "chat", "gpt-4o-mini", "cancelled"): 1}
