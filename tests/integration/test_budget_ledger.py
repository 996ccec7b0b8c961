"""Budget admission and settlement against real SQLite and real PostgreSQL: reservations are atomic
(parallel submitters never reserve past a limit), refusals name the limit, the spend and the reset,
settlement moves the estimate to the real cost, failed jobs release theirs, and keys have their own."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.prices import parse_prices
from domain.budgets.admission import BudgetExceeded, Holder, UnpricedModel, reserve
from domain.budgets.limits import BudgetLimits, set_budget
from domain.budgets.periods import Period
from domain.budgets.pricing import Charge
from domain.budgets.settlement import settle_finished
from domain.budgets.status import budget_status
from domain.errors import NotFound
from domain.ids import job_id
from domain.storage.models import Job
from domain.storage.sessions import session_scope
from domain.storage.spend_models import SpendCounter, SpendReservation
from domain.tenancy import api_keys

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)
PRICES = parse_prices(
    {"models": {"gpt-4o-mini": [{"effective": date(2024, 1, 1), "input": "0.15", "output": "0.60"}]}}
)


def _tenant() -> str:
    return f"budget-{uuid.uuid4().hex[:10]}"


def _job(session: Session, tenant: str, *, status: str = "queued", **usage: Any) -> str:
    job = Job(
        id=job_id(),
        tenant_id=tenant,
        kind="chat",
        model="gpt-4o-mini",
        tier="standard",
        status=status,
        request={"model": "gpt-4o-mini", "messages": []},
        attempts=1,
        finished_at=NOW if status != "queued" else None,
        **usage,
    )
    session.add(job)
    session.flush()
    return job.id


def _reserve(session: Session, tenant: str, holder: str, usd_nano: int, tokens: int = 10, **kw: Any) -> None:
    charge = Charge("gpt-4o-mini", tokens, usd_nano, priced=kw.pop("priced", True))
    reserve(
        session,
        tenant_id=tenant,
        key_id=kw.pop("key_id", None),
        charges=[(Holder("job", holder), charge)],
        now=kw.pop("now", NOW),
    )


def _counter(sessions: sessionmaker[Session], tenant: str, period: str, key_id: str = "") -> SpendCounter:
    with session_scope(sessions) as session:
        counter = session.scalars(
            select(SpendCounter).where(
                SpendCounter.tenant_id == tenant, SpendCounter.key_id == key_id, SpendCounter.period == period
            )
        ).one()
        session.expunge(counter)
        return counter


def test_a_tenant_without_a_budget_reserves_nothing(sessions: sessionmaker[Session]) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        held = reserve(
            session,
            tenant_id=tenant,
            key_id=None,
            charges=[(Holder("job", job_id()), Charge("gpt-4o-mini", 10, 10**12))],
            now=NOW,
        )
        assert held is False
        assert (
            session.scalars(select(SpendReservation).where(SpendReservation.tenant_id == tenant)).all() == []
        )


def test_over_the_daily_limit_the_refusal_names_limit_spend_and_reset(
    sessions: sessionmaker[Session],
) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_day=Decimal("1.00")), tenant_id=tenant)
    with session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 700_000_000)
    with pytest.raises(BudgetExceeded) as refused, session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 400_000_000)
    error = refused.value
    assert error.status_code == 429 and error.code == "budget_exceeded"
    assert "limit $1.00" in error.message and "reserved $0.70" in error.message
    assert "2026-04-01T00:00:00Z" in error.message
    assert error.headers["x-budget-reset"] == "2026-04-01T00:00:00Z"
    assert error.headers["retry-after"] == str(2 * 3600 + 1)
    assert _counter(sessions, tenant, "day").reserved_nano == 700_000_000  # the refusal rolled back
    with session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 300_000_000)  # exactly up to the limit is allowed
    assert _counter(sessions, tenant, "day").reserved_nano == 1_000_000_000


def test_a_token_limit_per_month_is_checked_across_days(sessions: sessionmaker[Session]) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(tokens_per_month=1000), tenant_id=tenant)
    with session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 0, tokens=600, now=datetime(2026, 3, 2, tzinfo=UTC))
    with pytest.raises(BudgetExceeded) as refused, session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 0, tokens=500)
    assert "monthly token budget" in refused.value.message
    assert "limit 1000 tokens, spent 0 + reserved 600" in refused.value.message
    assert "2026-04-01T00:00:00Z" in refused.value.message


def test_settlement_moves_the_estimate_to_the_real_cost_and_a_failed_job_releases_it(
    sessions: sessionmaker[Session],
) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_day=Decimal(5), tokens_per_day=10_000), tenant_id=tenant)
    with session_scope(sessions) as session:
        done = _job(session, tenant)
        failed = _job(session, tenant)
        waiting = _job(session, tenant)
        for holder in (done, failed, waiting):
            _reserve(session, tenant, holder, 1_000_000, tokens=2000)
    with session_scope(sessions) as session:  # the jobs end: one with usage, one failed, one still queued
        session.get_one(Job, done).status = "succeeded"
        row = session.get_one(Job, done)
        row.prompt_tokens, row.completion_tokens, row.total_tokens, row.finished_at = 1000, 500, 1500, NOW
        session.get_one(Job, failed).status = "failed"
        session.get_one(Job, failed).finished_at = NOW
    with session_scope(sessions) as session:  # the database is shared: earlier tests may leave some too
        assert settle_finished(session, PRICES, now=NOW, limit=100_000) >= 2
    with session_scope(sessions) as session:
        assert settle_finished(session, PRICES, now=NOW) == 0  # settled once
        settled = dict(
            session.execute(
                select(SpendReservation.holder_id, SpendReservation.settled_at).where(
                    SpendReservation.tenant_id == tenant
                )
            ).all()
        )
    assert {holder: at is not None for holder, at in settled.items()} == {
        done: True,
        failed: True,
        waiting: False,
    }
    counter = _counter(sessions, tenant, "day")
    # 1000 x 0.15 + 500 x 0.60 per million = $0.00045
    assert (counter.spent_nano, counter.spent_tokens) == (450_000, 1500)
    assert (counter.reserved_nano, counter.reserved_tokens) == (1_000_000, 2000)  # the queued job's
    with session_scope(sessions) as session:
        [status] = budget_status(session, now=NOW, tenant_id=tenant)
    day = next(spend for spend in status.periods if spend.period == Period.day)
    assert day.spent_usd == Decimal("0.00045") and day.limit_usd == Decimal(5)


def test_a_job_run_through_the_providers_batch_api_settles_at_the_batch_price(
    sessions: sessionmaker[Session],
) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_day=Decimal(5)), tenant_id=tenant)
    with session_scope(sessions) as session:
        live, batched = _job(session, tenant), _job(session, tenant)
        for holder in (live, batched):
            _reserve(session, tenant, holder, 1_000_000, tokens=2000)
    with session_scope(sessions) as session:
        for holder, path in ((live, "live"), (batched, "provider_batch")):
            row = session.get_one(Job, holder)
            row.status, row.execution_path, row.finished_at = "succeeded", path, NOW
            row.prompt_tokens, row.completion_tokens, row.total_tokens = 1000, 500, 1500
    with session_scope(sessions) as session:
        settle_finished(session, PRICES, now=NOW, limit=100_000)
    with session_scope(sessions) as session:
        spent = dict(
            session.execute(
                select(SpendReservation.holder_id, SpendReservation.spent_nano).where(
                    SpendReservation.tenant_id == tenant
                )
            ).all()
        )
    # live: 1000 x 0.15 + 500 x 0.60 per million = $0.00045; the Batch API's default price is half
    assert spent == {live: 450_000, batched: 225_000}
    assert _counter(sessions, tenant, "day").spent_nano == 675_000


def test_a_key_budget_applies_on_top_of_the_tenant_budget(sessions: sessionmaker[Session]) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        key = api_keys.create_key(session, tenant_id=tenant)
        other = api_keys.create_key(session, tenant_id=tenant)
        set_budget(session, BudgetLimits(usd_per_day=Decimal(10)), tenant_id=tenant)
        set_budget(session, BudgetLimits(usd_per_day=Decimal(1)), tenant_id=tenant, key_id=key.id)
    with session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 900_000_000, key_id=key.id)
    with pytest.raises(BudgetExceeded) as refused, session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 200_000_000, key_id=key.id)
    assert f"API key {key.id}" in refused.value.message
    with session_scope(sessions) as session:  # another key of the tenant only meets the tenant's limit
        _reserve(session, tenant, job_id(), 5_000_000_000, key_id=other.id)
    assert _counter(sessions, tenant, "day").reserved_nano == 5_900_000_000
    assert _counter(sessions, tenant, "day", key.id).reserved_nano == 900_000_000


def test_a_key_budget_needs_a_key_of_that_tenant(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(NotFound), session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_day=Decimal(1)), tenant_id=_tenant(), key_id="nosuchkey000")


def test_unpriced_models_are_refused_under_a_usd_limit_unless_allowed(
    sessions: sessionmaker[Session],
) -> None:
    tenant = _tenant()
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_month=Decimal(1)), tenant_id=tenant)
    with pytest.raises(UnpricedModel) as refused, session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 0, priced=False)
    assert refused.value.status_code == 422 and refused.value.code == "unpriced_model"
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_month=Decimal(1), allow_unpriced=True), tenant_id=tenant)
    with session_scope(sessions) as session:
        _reserve(session, tenant, job_id(), 0, priced=False)
    tokens_only = _tenant()
    with session_scope(sessions) as session:  # a token budget alone does not care about prices
        set_budget(session, BudgetLimits(tokens_per_day=100), tenant_id=tokens_only)
    with session_scope(sessions) as session:
        _reserve(session, tokens_only, job_id(), 0, priced=False)


def test_parallel_submitters_never_reserve_past_the_limit(sessions: sessionmaker[Session]) -> None:
    """24 threads race 4 reservations each of $0.30 against a $10 daily limit: exactly 33 fit."""
    tenant = _tenant()
    with session_scope(sessions) as session:
        set_budget(session, BudgetLimits(usd_per_day=Decimal(10)), tenant_id=tenant)
    start = threading.Barrier(24)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submitter() -> None:
        start.wait()
        for _ in range(4):
            try:
                with session_scope(sessions) as session:
                    holder = _job(session, tenant)
                    _reserve(session, tenant, holder, 300_000_000)
                outcome = "held"
            except BudgetExceeded:
                outcome = "refused"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=submitter) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("held") == 33 and outcomes.count("refused") == 96 - 33
    assert _counter(sessions, tenant, "day").reserved_nano == 33 * 300_000_000
    with session_scope(sessions) as session:
        jobs = session.scalars(select(Job.id).where(Job.tenant_id == tenant)).all()
        held = session.scalars(select(SpendReservation.holder_id).where(SpendReservation.tenant_id == tenant))
        assert sorted(held) == sorted(jobs)  # a job is stored if and only if its reservation is
