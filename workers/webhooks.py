"""Delivering webhooks: one attempt at a time, signed, over the SSRF guard, logged, then rescheduled.

``WebhookDeliverer.deliver(delivery_id)`` claims the delivery (a lease in the database), checks the URL
again and resolves it once, sends the stored payload to the checked address with fresh Standard
Webhooks headers (same ``webhook-id`` on every attempt), logs the attempt and sets the next one from
the retry schedule. A failing receiver only ever changes its delivery, never the job.

What counts:

- 2xx is success. Anything else is a failure, including 3xx (redirects are never followed).
- 410 Gone stops the retries of that delivery.
- 429 and 503 with ``Retry-After`` wait at least that long (capped) before the next attempt.
- Timeouts, connection errors and a URL whose name now resolves to a refused address retry on
  schedule; a URL that can never be called (bad scheme, credentials, private literal) fails at once.

Each attempt has an overall deadline (``attempt_deadline``: twice BATCHERY_WEBHOOK_TIMEOUT_SECONDS,
inside the lease), so a receiver that trickles its answer cannot hold a thread past it. One tenant may
hold at most half of a process's delivery threads (BATCHERY_WEBHOOK_CONCURRENCY); its further
deliveries wait for the next poll, so one tenant's slow receivers never hold every tenant's deliveries.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from domain.leases.keeper import LeaseKeeper
from domain.leases.tables import DELIVERY_LEASES
from domain.redaction import redact
from domain.storage.models import WebhookDelivery, utcnow
from domain.storage.sessions import session_scope
from domain.webhooks import repository as repo
from domain.webhooks.repository import DeliveryAttempt, DeliveryClaim
from domain.webhooks.url_safety import Resolver, UnsafeUrl, check_url, system_resolver
from workers.ratelimit_headers import retry_delay
from workers.safe_http import OutboundError, send_pinned
from workers.tenant_slots import TenantSlots
from workers.webhook_signing import webhook_headers

log = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
MAX_RETRY_AFTER = 24 * 3600.0
JITTER = 0.1
RETRY_AFTER_STATUS = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result and whether another attempt may follow."""

    record: DeliveryAttempt
    succeeded: bool = False
    may_retry: bool = True
    retry_after: float | None = None


def next_delivery_delay(
    schedule: Sequence[float],
    round_attempt: int,
    outcome: Outcome,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds until the next attempt after attempt ``round_attempt`` (1-based), or None to stop.

    ``schedule[k]`` is the delay before attempt ``k + 1``; a longer Retry-After wins; up to 10 % jitter
    spreads retries of many deliveries that failed together.
    """
    if outcome.succeeded or not outcome.may_retry or round_attempt >= len(schedule):
        return None
    delay = schedule[round_attempt] * (1 + JITTER * rand())
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER))
    return delay


def outcome_of(status_code: int, headers: dict[str, str] | None, record: DeliveryAttempt) -> Outcome:
    """Classify an HTTP answer."""
    if 200 <= status_code < 300:
        return Outcome(record, succeeded=True, may_retry=False)
    if status_code == 410:
        return Outcome(record, may_retry=False)
    wait = retry_delay(headers or {}) if status_code in RETRY_AFTER_STATUS else None
    return Outcome(record, retry_after=wait)


def tenant_share(threads: int) -> int:
    """How many of a process's ``threads`` delivery threads one tenant may hold: half of them."""
    return max(1, threads // 2)


def _excerpt(body: bytes) -> str:
    return body[:EXCERPT_BYTES].decode("utf-8", errors="replace")


class WebhookDeliverer:
    """Delivers webhooks for one worker process."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: httpx.Client,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        on_result: Callable[[str], None] | None = None,
        keeper: LeaseKeeper | None = None,
    ) -> None:
        self.settings = settings
        self.keeper = keeper
        self.on_result = on_result
        self.sessions = sessions
        self.client = client
        self.resolver = resolver
        self.clock = clock
        self.rand = rand
        self.tenant_slots = TenantSlots(tenant_share(settings.webhook_concurrency))

    @property
    def lease_seconds(self) -> float:
        """With a heartbeat renewing it, the settings' lease; without one, long enough for resolving,
        connecting, sending and reading, each within the timeout."""
        if self.keeper is not None:
            return self.settings.lease_seconds
        return 4 * self.settings.webhook_timeout_seconds + 30.0

    @property
    def attempt_deadline(self) -> float:
        """The whole exchange of one attempt ends by then: twice the timeout, well inside the lease."""
        return 2 * self.settings.webhook_timeout_seconds

    def deliver(self, delivery_id: str) -> str:
        """Make one attempt if the delivery is due; returns what happened, for logs and tests. A tenant
        that already has its share of this process's delivery threads busy waits for the next poll."""
        with session_scope(self.sessions) as session:
            tenant = session.scalar(
                select(WebhookDelivery.tenant_id).where(WebhookDelivery.id == delivery_id)
            )
            if tenant is None:
                return "skipped"
            if not self.tenant_slots.take(tenant):
                repo.mark_dispatched(session, [delivery_id], None)  # the poll sends it again
                return "deferred"
        try:
            return self._deliver(delivery_id)
        finally:
            self.tenant_slots.give(tenant)

    def _deliver(self, delivery_id: str) -> str:
        if self.keeper is not None and self.keeper.failing:
            return "skipped"  # its heartbeat cannot renew: no new attempt here (the sweep sends it again)
        with session_scope(self.sessions) as session:
            claim = repo.claim_delivery(session, delivery_id, lease_seconds=self.lease_seconds)
        if claim is None:
            return "skipped"
        if self.keeper is not None:
            with self.keeper.holding(DELIVERY_LEASES, claim.delivery_id):
                outcome = self.attempt(claim)
        else:
            outcome = self.attempt(claim)
        delay = next_delivery_delay(
            self.settings.webhook_retry_schedule, claim.round_attempt, outcome, self.rand
        )
        next_at = utcnow() + timedelta(seconds=delay) if delay is not None else None
        with session_scope(self.sessions) as session:
            repo.finish_attempt(
                session, claim, outcome.record, succeeded=outcome.succeeded, next_attempt_at=next_at
            )
        result = "succeeded" if outcome.succeeded else ("retrying" if next_at is not None else "failed")
        log.info(
            "webhook attempt %s of %s: %s (status %s, %d ms)%s",
            claim.attempt,
            claim.delivery_id,
            result,
            outcome.record.status_code,
            outcome.record.duration_ms,
            f": {outcome.record.error}" if outcome.record.error else "",
            extra={"delivery_id": claim.delivery_id, "event_id": claim.event_id, "outcome": result},
        )
        if self.on_result is not None:
            self.on_result(result)
        return result

    def attempt(self, claim: DeliveryClaim) -> Outcome:
        """Check the URL again, sign, send once to the checked address, and classify the answer."""
        started_at = utcnow()
        started = time.monotonic()

        def record(**values: object) -> DeliveryAttempt:
            elapsed = int((time.monotonic() - started) * 1000)
            for field in ("error", "response_excerpt"):
                if isinstance(values.get(field), str):
                    values[field] = redact(str(values[field]))
            return DeliveryAttempt(started_at=started_at, duration_ms=elapsed, **values)  # type: ignore[arg-type]

        keys = self.settings.webhook_signing_keys
        if not keys:
            return Outcome(record(error="webhooks are not configured: set BATCHERY_WEBHOOK_SECRETS"))
        try:
            checked = check_url(
                claim.url, allowed_networks=self.settings.webhook_allowed_networks, resolver=self.resolver
            )
        except UnsafeUrl as exc:
            return Outcome(record(error=f"refused: {exc.message}"), may_retry=not exc.permanent)
        body = claim.payload.encode("utf-8")
        headers = webhook_headers(keys, claim.event_id, int(self.clock()), body)
        try:
            response = send_pinned(
                self.client,
                checked,
                "POST",
                headers,
                body,
                max_body_bytes=EXCERPT_BYTES,
                deadline=self.attempt_deadline,
            )
        except OutboundError as exc:
            return Outcome(record(error=exc.message))
        answered = record(
            status_code=response.status_code,
            response_excerpt=_excerpt(response.excerpt),
            error=_status_note(response.status_code),
        )
        return outcome_of(response.status_code, dict(response.headers), answered)


def _status_note(status_code: int) -> str | None:
    if 300 <= status_code < 400:
        return f"the receiver answered {status_code} (a redirect, which is never followed)"
    if status_code == 410:
        return "the receiver answered 410 Gone: no more attempts"
    if not 200 <= status_code < 300:
        return f"the receiver answered {status_code}"
    return None
