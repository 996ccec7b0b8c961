"""What a traced job run adds to the metrics, and the line it logs: pure, with a fake store and clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from config.prices import DEFAULT_PRICES_FILE, load_prices
from config.tiers import DEFAULT_TIERS_FILE, load_tiers
from domain.jobs.repository import Claim
from domain.metrics import catalog
from domain.metrics.store import SEP, MetricBatch
from domain.tokens.estimates import UsageColumns
from workers import run_metrics, upstream
from workers.run_metrics import JobMetrics, upstream_outcome

pytestmark = pytest.mark.unit

NOW = datetime(2025, 7, 1, 12, tzinfo=UTC).timestamp()


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[MetricBatch] = []

    def write(self, batch: MetricBatch, now: float) -> None:
        assert now == NOW
        self.batches.append(batch)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _metrics() -> tuple[JobMetrics, FakeStore, Clock]:
    store, clock = FakeStore(), Clock()
    metrics = JobMetrics(
        store,  # type: ignore[arg-type]
        load_tiers(DEFAULT_TIERS_FILE),
        load_prices(DEFAULT_PRICES_FILE),
        clock=lambda: NOW,
        monotonic=clock,
    )
    return metrics, store, clock


def _claim(model: str = "gpt-4o-mini", tier: str = "standard", attempt: int = 1) -> Claim:
    return Claim("job_1", "token", attempt, "chat", model, tier, {"model": model}, 10)


def _key(family: catalog.Family, *labels: str) -> str:
    return SEP.join((family.name, *labels))


def _http_error(status: int) -> upstream.UpstreamHTTPError:
    return upstream.UpstreamHTTPError(status, body={"error": {"message": "no", "type": "x"}})


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (_http_error(429), "429"),
        (_http_error(400), "4xx"),
        (_http_error(503), "5xx"),
        (upstream.UpstreamTimeout(), "timeout"),
        (upstream.UpstreamConnectionError(), "connection_error"),
        (upstream.UpstreamMalformed(), "malformed"),
        (ValueError("boom"), "other"),
    ],
)
def test_upstream_outcomes_have_bounded_labels(error: BaseException | None, outcome: str) -> None:
    assert upstream_outcome(error) == outcome
    assert outcome in catalog.UPSTREAM_OUTCOMES


def test_a_run_that_was_retried_after_a_429_counts_every_call_retry_wait_token_and_dollar() -> None:
    metrics, store, clock = _metrics()

    def run(job_id: str) -> str:
        run_metrics.note_claim(_claim())
        run_metrics.note_limiter_wait(0.0)
        run_metrics.note_upstream(0.2, _http_error(429))
        run_metrics.note_retry(_http_error(429))
        run_metrics.note_limiter_wait(0.3)
        run_metrics.note_upstream(1.5)
        run_metrics.note_usage(UsageColumns(1000, 500, 1500, 200, 0, 0))
        clock.now += 2.0
        return "succeeded"

    assert metrics.run("job_1", run) == "succeeded"

    [batch] = store.batches
    counters = dict(batch.counters)
    assert counters[_key(catalog.UPSTREAM_REQUESTS, "standard", "gpt-4o-mini", "429")] == 1
    assert counters[_key(catalog.UPSTREAM_REQUESTS, "standard", "gpt-4o-mini", "ok")] == 1
    assert counters[_key(catalog.RETRIES, "standard", "gpt-4o-mini", "429")] == 1
    assert counters[_key(catalog.JOBS_FINISHED, "standard", "chat", "gpt-4o-mini", "succeeded")] == 1
    assert counters[_key(catalog.TOKENS, "standard", "gpt-4o-mini", "input")] == 1000
    assert counters[_key(catalog.TOKENS, "standard", "gpt-4o-mini", "output")] == 500
    assert counters[_key(catalog.TOKENS, "standard", "gpt-4o-mini", "cached_input")] == 200
    # (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1e6 USD, kept in billionths
    assert counters[_key(catalog.COST, "standard", "gpt-4o-mini")] == 435_000
    latency = _key(catalog.UPSTREAM_LATENCY, "standard", "gpt-4o-mini")
    assert batch.histograms[f"{latency}{SEP}b2"] == 1  # 0.2 s: the 0.25 s bucket
    assert batch.histograms[f"{latency}{SEP}b5"] == 1  # 1.5 s: the 2 s bucket
    assert batch.histograms[f"{latency}{SEP}sum"] == 1_700_000
    wait = _key(catalog.LIMITER_WAIT, "standard", "gpt-4o-mini")
    assert batch.histograms[f"{wait}{SEP}b0"] == 1 and batch.histograms[f"{wait}{SEP}b5"] == 1  # 0 s, 0.3 s
    window = dict(batch.window)
    assert window["standard|gpt-4o-mini|requests"] == 2
    assert window["standard|gpt-4o-mini|429"] == 1
    assert window["standard|gpt-4o-mini|tokens"] == 1500
    assert window["standard|gpt-4o-mini|wait_us"] == 300_000


def test_the_job_line_carries_id_tier_model_attempt_and_latency(caplog: pytest.LogCaptureFixture) -> None:
    metrics, _store, clock = _metrics()

    def run(job_id: str) -> str:
        run_metrics.note_claim(_claim(attempt=2))
        run_metrics.note_upstream(0.1, upstream.UpstreamTimeout())
        run_metrics.note_retry(upstream.UpstreamTimeout())
        run_metrics.note_upstream(0.4)
        clock.now += 0.75
        return "succeeded"

    with caplog.at_level(logging.INFO, logger="batchery.jobs"):
        metrics.run("job_1", run)

    retry, done = caplog.records
    assert retry.message == "retrying upstream call"
    assert (retry.job_id, retry.attempt, retry.reason) == ("job_1", 2, "timeout")  # type: ignore[attr-defined]
    assert done.message == "job succeeded"
    fields = {name: getattr(done, name) for name in ("job_id", "tier", "model", "attempt", "latency_ms")}
    assert fields == {
        "job_id": "job_1",
        "tier": "standard",
        "model": "gpt-4o-mini",
        "attempt": 3,
        "latency_ms": 750,
    }


def test_a_run_that_raises_counts_as_an_interrupted_run_and_the_error_goes_on() -> None:
    metrics, store, _clock = _metrics()

    def run(job_id: str) -> str:
        run_metrics.note_claim(_claim())
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        metrics.run("job_1", run)

    assert dict(store.batches[0].counters) == {_key(catalog.RUNS_INTERRUPTED, "standard", "error"): 1}


def test_a_run_that_claimed_nothing_writes_nothing_and_hooks_outside_a_run_do_nothing() -> None:
    metrics, store, _clock = _metrics()
    run_metrics.note_upstream(1.0)  # no trace open: ignored

    assert metrics.run("job_1", lambda job_id: "skipped") == "skipped"
    assert store.batches == []


def test_unknown_models_and_tiers_collapse_to_one_label() -> None:
    metrics, store, _clock = _metrics()

    def run(job_id: str) -> str:
        run_metrics.note_claim(_claim(model="someone-elses-model", tier="gone"))
        run_metrics.note_upstream(0.1)
        return "failed"

    metrics.run("job_1", run)

    names = set(store.batches[0].counters)
    assert _key(catalog.JOBS_FINISHED, "other", "chat", "other", "failed") in names
    assert all("someone-elses-model" not in name and "gone" not in name for name in names)


def test_metric_batches_scale_and_bucket_their_values() -> None:
    batch = MetricBatch()
    batch.count(catalog.COST, ("standard", "gpt-4o-mini"), 0.0000015)
    batch.observe(catalog.UPSTREAM_LATENCY, ("standard", "gpt-4o-mini"), 1000.0)
    batch.observe(catalog.UPSTREAM_LATENCY, ("standard", "gpt-4o-mini"), float("nan"))

    assert batch.counters[_key(catalog.COST, "standard", "gpt-4o-mini")] == 1500
    base = _key(catalog.UPSTREAM_LATENCY, "standard", "gpt-4o-mini")
    assert batch.histograms[f"{base}{SEP}b{len(catalog.LATENCY_BUCKETS)}"] == 1  # +Inf
    assert batch.histograms[f"{base}{SEP}b0"] == 1  # NaN counts as 0
