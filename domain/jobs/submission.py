"""Submission rules: how a submitted job becomes a ``NewJob``, in one place for every way jobs come in.

``POST /v1/jobs`` and ``POST /v1/jobs/bulk`` both call ``Submission.prepare``, which checks, in order:

1. the request body can be stored as JSON: depth, NUL, lone surrogates, finite numbers, integer ranges
   (``domain.jobs.json_safety``), the same on SQLite and PostgreSQL;
2. the OpenAI request body for the job's kind (``domain.jobs.schemas.validate_body``); the model name
   is stripped of surrounding spaces, and the stored (and forwarded) request carries that name;
3. the configured input limits: messages, metadata size, URL lengths (``domain.jobs.input_limits``);
4. the webhook URL: public, resolvable, and webhooks configured (the check the caller hands in,
   ``domain.webhooks.url_safety`` for the API);
5. the tier that serves the model (422 ``unknown_model`` naming the known models);
6. the output tokens asked for, within the model's limits (``domain.jobs.token_bounds``);

then estimates the job's tokens (``domain.tokens.estimates``) for the limiter. Any failure raises the
``ServiceError`` a caller sees. ``Submission.prepare_item`` does the same for one item of a bulk
request and answers an ``ItemError`` (with the item's index, and ``param`` naming the field inside
``jobs.<index>``) instead of raising, so every item is checked and reported on its own.

A ``Submission`` lives for one request: it reads the settings once and checks each distinct webhook
URL once, however many items name it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from config.settings import Settings
from config.tiers import Tier
from domain.errors import ServiceError, UnknownModel
from domain.jobs import dispatch_repository
from domain.jobs.execution import ExecutionMode, batch_endpoint, choose_path, deadline_for, window_seconds
from domain.jobs.input_limits import InputLimits, check_job
from domain.jobs.json_safety import check_json, printable
from domain.jobs.repository import NewJob
from domain.jobs.schemas import JobCreate, validate_body, with_model
from domain.jobs.token_bounds import check_context_window, check_output_tokens, stored_estimate
from domain.storage.models import utcnow
from domain.tenancy.fair_share import window_size
from domain.tokens.estimates import estimate_cost

WebhookCheck = Callable[[str, Settings], object]
"""``check(url, settings)``: raises ``InvalidWebhookUrl`` when jobs may not call ``url`` back."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item of a bulk request was refused: the same code, message and param as a single
    submission would answer, with ``param`` prefixed by ``jobs.<index>.``."""

    index: int
    code: str
    message: str
    param: str | None = None


class Submission:
    """Checks submitted jobs for one request and builds what the repository stores."""

    def __init__(self, settings: Settings, *, tenant_id: str, check_webhook: WebhookCheck) -> None:
        self.settings = settings
        self.tenant_id = tenant_id
        self.limits = InputLimits.from_settings(settings)
        self._check_webhook = check_webhook
        self._webhooks: dict[str, ServiceError | None] = {}

    def prepare(self, body: JobCreate, *, idempotency_key: str | None = None) -> NewJob:
        """The job to store, or the ServiceError (a 4xx) that explains why it cannot be."""
        check_json(body.request, param="request")
        model = validate_body(body.kind, body.request)
        request = with_model(body.request, model)
        check_job(self.limits, request, metadata=body.metadata, webhook_url=body.webhook_url)
        if body.webhook_url is not None:
            self.check_webhook(body.webhook_url)
        tier = self.tier_for(model)
        limits = self.settings.tiers.limits_for(model)
        check_output_tokens(request, model, limits)
        check_context_window(body.kind.value, request, model, limits)
        cost = estimate_cost(body.kind.value, request, default_max_tokens=self.settings.default_max_tokens)
        window = window_seconds(body.completion_window) if body.completion_window else None
        provider = self.settings.providers[tier.provider]
        path = choose_path(
            body.execution, window=window, provider_serves=provider.serves_batch(batch_endpoint(body.kind))
        )
        return NewJob(
            kind=body.kind.value,
            model=model,
            tier=tier.name,
            request=request,
            estimated_tokens=stored_estimate(cost.tokens),
            priority=body.priority,
            metadata=body.metadata,
            webhook_url=body.webhook_url,
            tenant_id=self.tenant_id,
            idempotency_key=idempotency_key,
            execution_path=path,
            deadline_at=deadline_for(utcnow(), path, window),
        )

    def prepare_item(self, index: int, raw: Any) -> NewJob | ItemError:
        """One item of a bulk request: the job, or its error (never raises for bad input)."""
        prefix = f"jobs.{index}"
        if not isinstance(raw, dict):
            return ItemError(index, "invalid_request", f"{prefix}: each job must be a JSON object", prefix)
        try:
            body = JobCreate.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = printable(".".join(str(part) for part in first.get("loc", ())))
            param = f"{prefix}.{where}" if where else prefix
            message = printable(f"{param}: {first.get('msg', 'invalid')}")
            return ItemError(index, "invalid_request", message, param)
        if body.execution is not ExecutionMode.live:
            message = f"{prefix}.execution: bulk jobs run live; send deferred jobs one by one or as a batch"
            return ItemError(index, "execution_unsupported", message, f"{prefix}.execution")
        try:
            return self.prepare(body)
        except ServiceError as exc:
            param = f"{prefix}.{exc.param}" if exc.param else prefix
            message = exc.message
            if exc.param and message.startswith(f"{exc.param}:"):
                message = f"{prefix}.{message}"
            return ItemError(index, exc.code, message, param)

    def check_webhook(self, url: str) -> None:
        """Check ``url`` (once per request: a repeat answers as the first check did)."""
        if url not in self._webhooks:
            try:
                self._check_webhook(url, self.settings)
                self._webhooks[url] = None
            except ServiceError as exc:
                self._webhooks[url] = exc
        refusal = self._webhooks[url]
        if refusal is not None:
            raise refusal

    def tier_for(self, model: str) -> Tier:
        tier = self.settings.tiers.tier_for(model)
        if tier is None:
            known = ", ".join(self.settings.tiers.known_models)
            raise UnknownModel(
                f"no tier serves model {model!r}; known models: {known}", param="request.model"
            )
        return tier


def window_room(session: Session, settings: Settings, tier: Tier) -> int:
    """Free places in ``tier``'s window: how many new jobs the fast path may send at once. The rest wait
    in the backlog for the dispatcher (``workers.dispatcher``), which is fair across tenants."""
    window = window_size(tier.concurrency, settings.dispatch_window_factor)
    return max(0, window - dispatch_repository.queued_in_window(session, tier.name))


class WindowRooms:
    """The fast path's view of each tier's free window places, for one API process: read from the
    database at most every ``ttl`` seconds per tier and counted down locally in between, so a steady
    stream of submissions costs no query each. Places freed by workers meanwhile are seen at the next
    read; other API processes may fill the same places meanwhile, so a window can overshoot by what they
    send within ``ttl``, which the dispatcher tolerates (it only tops a window up)."""

    def __init__(self, ttl: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._rooms: dict[str, tuple[int, float]] = {}

    def take(self, session: Session, settings: Settings, tier: Tier, wanted: int = 1) -> int:
        """Take up to ``wanted`` places in ``tier``'s window; returns how many were granted."""
        now = self.clock()
        with self._lock:
            known = self._rooms.get(tier.name)
            if known is not None and now - known[1] < self.ttl:
                granted = min(wanted, known[0])
                self._rooms[tier.name] = (known[0] - granted, known[1])
                return granted
        room = window_room(session, settings, tier)
        granted = min(wanted, room)
        with self._lock:
            self._rooms[tier.name] = (room - granted, now)
        return granted
