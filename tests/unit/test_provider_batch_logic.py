"""The pure parts of the provider batch path: choosing the execution path, completion windows, flush
thresholds, the JSONL both ways, the fate of each job, and batch prices."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from config.prices import ModelPrice, parse_prices
from config.providers import OPENAI_BATCH_ENDPOINTS, Provider
from config.tiers import DEFAULT_TIERS_FILE
from domain.errors import InvalidRequest
from domain.jobs.execution import (
    DEFERRED_OWNER,
    ExecutionMode,
    ExecutionPath,
    batch_endpoint,
    choose_path,
    deadline_for,
    path_columns,
    window_seconds,
)
from domain.provider_batches.grouping import FlushRule, GroupKey, WaitingGroup
from domain.provider_batches.lines import LineResult, Verdict, input_line, read_lines, verdict
from domain.provider_batches.states import file_name

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
DAY = 24 * 3600


@pytest.mark.parametrize(
    ("mode", "window", "serves", "path"),
    [
        (ExecutionMode.live, None, True, ExecutionPath.live),
        (ExecutionMode.auto, None, True, ExecutionPath.provider_batch),
        (ExecutionMode.auto, 2 * DAY, True, ExecutionPath.provider_batch),
        (ExecutionMode.auto, 3600, True, ExecutionPath.live),  # cannot wait a provider batch's 24 hours
        (ExecutionMode.auto, None, False, ExecutionPath.live),  # no Batch API for it
        (ExecutionMode.provider_batch, DAY, True, ExecutionPath.provider_batch),
    ],
)
def test_the_execution_path_follows_the_mode_the_window_and_the_provider(
    mode: ExecutionMode, window: int | None, serves: bool, path: ExecutionPath
) -> None:
    assert choose_path(mode, window=window, provider_serves=serves) is path


@pytest.mark.parametrize(
    ("window", "serves", "code"),
    [(None, False, "provider_batch_unsupported"), (3600, True, "completion_window_too_short")],
)
def test_provider_batch_where_it_cannot_run_is_refused_with_a_code(
    window: int | None, serves: bool, code: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        choose_path(ExecutionMode.provider_batch, window=window, provider_serves=serves)
    assert refused.value.code == code


def test_completion_windows_are_hours_or_days() -> None:
    assert (window_seconds("24h"), window_seconds("7d"), window_seconds("1h")) == (DAY, 7 * DAY, 3600)
    for bad in ("0h", "24", "1w", "24 h", "31d", "-1h"):
        with pytest.raises(ValueError):
            window_seconds(bad)


def test_a_deferred_job_is_held_by_the_provider_batch_path_until_its_deadline() -> None:
    deadline = deadline_for(NOW, ExecutionPath.provider_batch, None)
    assert deadline == NOW + timedelta(days=1)
    columns = path_columns(ExecutionPath.provider_batch, deadline)
    assert columns["status"] == "running" and columns["lease_owner"] == DEFERRED_OWNER
    assert columns["lease_expires_at"] == deadline and columns["dispatched_at"] is None
    assert path_columns(ExecutionPath.live, None) == {"execution_path": "live", "deadline_at": None}
    assert deadline_for(NOW, ExecutionPath.live, None) is None


def test_endpoints_by_kind_and_the_providers_that_serve_them() -> None:
    assert [batch_endpoint(kind) for kind in ("chat", "vision", "embedding", "response", "image")] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/images/generations",
    ]
    openai = Provider(base_url="https://api.openai.com/v1", batch_endpoints=OPENAI_BATCH_ENDPOINTS)
    assert openai.serves_batch("/v1/embeddings") and not openai.serves_batch("/v1/images/generations")
    assert not Provider(base_url="https://gw.example/v1").serves_batch("/v1/chat/completions")
    with pytest.raises(ValueError, match="batch_endpoints"):
        Provider(base_url="https://gw.example/v1", batch_endpoints=("/v1/images/generations",))


KEY = GroupKey("openai", "/v1/chat/completions", "gpt-4o-mini", "standard", "chat")


@pytest.mark.parametrize(
    ("count", "age", "due"),
    [(0, 999, False), (1, 59, False), (1, 60, True), (999, 0, False), (1000, 0, True)],
)
def test_a_group_is_flushed_when_full_or_old(count: int, age: float, due: bool) -> None:
    group = WaitingGroup(KEY, count, NOW - timedelta(seconds=age))
    assert FlushRule(flush_size=1000, flush_age_seconds=60).is_due(group, NOW) is due


def test_a_group_is_flushed_when_its_requests_fill_the_byte_threshold() -> None:
    rule = FlushRule(flush_size=1000, flush_age_seconds=60, flush_bytes=10_000)
    assert rule.is_due(WaitingGroup(KEY, 3, NOW, bytes=12_000), NOW)
    assert not rule.is_due(WaitingGroup(KEY, 3, NOW, bytes=9_000), NOW)


def test_one_provider_batch_takes_what_fits_in_its_line_and_byte_limits() -> None:
    rule = FlushRule(max_lines=3, max_bytes=100)
    assert rule.take([10, 10, 10, 10]) == 3
    assert rule.take([40, 40, 40]) == 2
    assert rule.take([500, 10]) == 1  # one line over the limit still goes, alone
    assert rule.take([]) == 0


def test_input_lines_carry_the_job_id_as_custom_id() -> None:
    line = input_line("job_1", "/v1/embeddings", {"model": "m", "input": "é"})
    assert line.endswith(b"\n")
    assert json.loads(line) == {
        "custom_id": "job_1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "m", "input": "é"},
    }
    assert file_name("pbatch_x") == "batchery-pbatch_x.jsonl"


def _output(custom_id: str, status: int, body: dict[str, object]) -> bytes:
    record = {
        "id": "r",
        "custom_id": custom_id,
        "response": {"status_code": status, "body": body},
        "error": None,
    }
    return json.dumps(record).encode() + b"\n"


def test_output_and_error_lines_map_back_to_their_jobs_once() -> None:
    ok = _output("job_a", 200, {"id": "x", "usage": {"total_tokens": 3}})
    bad = _output("job_b", 400, {"error": {"message": "nope", "code": "invalid_value"}})
    expired = json.dumps(
        {"custom_id": "job_c", "response": None, "error": {"code": "batch_expired", "message": "late"}}
    ).encode()
    content = ok + b"not json\n" + _output("job_a", 200, {"id": "again"}) + _output("job_zz", 200, {}) + bad
    split = [content[:7], content[7:50], content[50:] + expired]  # lines cut across chunks
    read = read_lines(split, ["job_a", "job_b", "job_c"])
    assert read.results["job_a"].succeeded and read.results["job_a"].body == {
        "id": "x",
        "usage": {"total_tokens": 3},
    }
    assert (read.results["job_b"].status_code, read.results["job_b"].error_code) == (400, "invalid_value")
    assert read.results["job_c"].error_code == "batch_expired" and not read.results["job_c"].succeeded
    assert read.skipped == 3  # not JSON, a second line for job_a, a job not in the batch


DEADLINE = NOW + timedelta(hours=24)


@pytest.mark.parametrize(
    ("result", "cancel", "deadline", "fate"),
    [
        (LineResult("j", 200, {"id": "x"}), False, DEADLINE, Verdict.complete),
        (LineResult("j", 200, {"id": "x"}), True, DEADLINE, Verdict.complete),  # billed: result kept
        (LineResult("j", 400, {"error": {}}, "invalid_value", "bad"), False, DEADLINE, Verdict.fail),
        (LineResult("j", 429, None, "rate_limit_exceeded"), False, DEADLINE, Verdict.live),
        (LineResult("j", 503, None), False, DEADLINE, Verdict.live),
        (LineResult("j", 503, None), False, NOW + timedelta(minutes=5), Verdict.fail),  # no time left
        (LineResult("j", 503, None), True, DEADLINE, Verdict.cancel),
        (None, False, DEADLINE, Verdict.live),  # expired before the line ran
        (None, False, None, Verdict.live),
        (None, False, NOW + timedelta(minutes=1), Verdict.fail),
    ],
)
def test_each_jobs_fate_after_its_provider_batch_ended(
    result: LineResult | None, cancel: bool, deadline: datetime | None, fate: Verdict
) -> None:
    got, line = verdict(
        result,
        missing_code="batch_expired",
        cancel_requested=cancel,
        deadline=deadline,
        now=NOW,
        live_margin_seconds=600,
    )
    assert got is fate
    if result is None:
        assert line.error_code == "batch_expired" and line.error_message


def test_batch_prices_are_half_unless_named() -> None:
    price = ModelPrice(
        effective=date(2025, 1, 1),
        input=Decimal("0.15"),
        cached_input=Decimal("0.075"),
        output=Decimal("0.60"),
    )
    batch = price.batch_price()
    assert (batch.input, batch.cached_input_price, batch.output) == (
        Decimal("0.075"),
        Decimal("0.0375"),
        Decimal("0.30"),
    )
    table = parse_prices(
        {
            "models": {
                "m": [
                    {
                        "effective": date(2025, 1, 1),
                        "input": Decimal(2),
                        "output": Decimal(8),
                        "batch_discount": Decimal("0.25"),
                        "batch_output": Decimal(1),
                    }
                ]
            }
        }
    )
    entry = table.price_on("m", date(2025, 2, 1))
    assert entry is not None
    named = entry.batch_price()
    assert (named.input, named.cached_input_price, named.output) == (
        Decimal("1.50"),
        Decimal("1.50"),
        Decimal(1),
    )
    with pytest.raises(ValueError):
        ModelPrice(effective=date(2025, 1, 1), batch_discount=Decimal("1.5"))


def test_a_settlements_metrics_count_fates_batch_cost_and_savings() -> None:
    from config.tiers import load_tiers
    from domain.metrics import catalog
    from domain.provider_batches.settle import SettledJob, Settlement
    from domain.tokens.estimates import usage_columns
    from workers.provider_batch_metrics import SettlementMetrics

    prices = parse_prices(
        {
            "models": {
                "gpt-4o-mini": [
                    {"effective": date(2025, 1, 1), "input": Decimal("0.15"), "output": Decimal("0.60")}
                ]
            }
        }
    )
    tiers = load_tiers(DEFAULT_TIERS_FILE)
    done = Settlement(
        jobs=[
            SettledJob(
                "standard",
                "chat",
                "gpt-4o-mini",
                "complete",
                "succeeded",
                usage_columns("chat", {"prompt_tokens": 1_000_000, "completion_tokens": 0}),
            ),
            SettledJob("standard", "chat", "gpt-4o-mini", "live", None),
        ]
    )
    metrics = SettlementMetrics(None, tiers, prices, clock=lambda: NOW.timestamp())  # type: ignore[arg-type]
    batch = metrics.batch_of(done)
    counters = dict(batch.counters)

    def stored(family: catalog.Family, *labels: str) -> float:
        return counters.get("|".join((family.name, *labels)), 0) / family.scale

    assert stored(catalog.PROVIDER_BATCH_JOBS, "standard", "gpt-4o-mini", "complete") == 1
    assert stored(catalog.PROVIDER_BATCH_JOBS, "standard", "gpt-4o-mini", "live") == 1
    assert stored(catalog.JOBS_FINISHED, "standard", "chat", "gpt-4o-mini", "succeeded") == 1
    assert stored(catalog.COST, "standard", "gpt-4o-mini") == pytest.approx(0.075)
    assert stored(catalog.BATCH_SAVINGS, "standard", "gpt-4o-mini") == pytest.approx(0.075)


def test_the_enqueued_token_room_caps_a_provider_batch() -> None:
    assert FlushRule.take_tokens([40, 40, 40], None, nothing_queued=True) == 3
    assert FlushRule.take_tokens([40, 40, 40], 100, nothing_queued=True) == 2
    assert FlushRule.take_tokens([40, 40, 40], 30, nothing_queued=False) == 0  # wait for room
    assert FlushRule.take_tokens([500, 40], 100, nothing_queued=True) == 1  # alone, or never
    assert FlushRule.take_tokens([500, 40], 100, nothing_queued=False) == 0
