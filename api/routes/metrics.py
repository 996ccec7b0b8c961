"""``/metrics``: Prometheus metrics for the whole deployment, whichever API process answers.

It needs no key and shows deployment-wide tokens and cost per tier and model, and each budget's spend
against its limits (labelled with the tenant and key id the budget is set for): keep it off the
public ingress (``docs/security.md``)."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, flush_job_counters
from api.metrics_collector import BatcheryCollector
from domain.budgets.status import PeriodSpend, budget_status
from domain.errors import Unavailable
from domain.jobs.schemas import ErrorBody
from domain.metrics.store import MetricStore
from domain.metrics.tier_counts import tier_counts
from domain.storage.models import utcnow

router = APIRouter(tags=["health"])


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
    503: {"model": ErrorBody, "description": "Redis, where the metrics are kept, is unavailable"},
}


def budget_periods(session: Session) -> list[PeriodSpend]:
    """Every budget's current day and month (nothing to read when no budget is set)."""
    return [
        spend for status in budget_status(session, now=utcnow(), tenant_id=None) for spend in status.periods
    ]


@router.get("/metrics", response_class=Response, responses=RESPONSES)
def metrics(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Counters and histograms shared by every process (kept in Redis), and gauges read now."""
    flush_job_counters(request.app.state)  # what this process counted is in its own answer
    store = MetricStore(request.app.state.redis, settings.redis_prefix)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        BatcheryCollector(
            store, settings.tiers, lambda: tier_counts(session), lambda: budget_periods(session)
        )
    )
    try:
        body = generate_latest(registry)
    except (redis.RedisError, OSError) as exc:
        raise Unavailable(f"metrics are kept in Redis, which is unavailable ({type(exc).__name__})") from exc
    return Response(body, media_type=CONTENT_TYPE_LATEST)
