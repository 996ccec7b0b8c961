"""Ending the jobs of a provider batch the provider finished, exactly as a live run ends them.

Each job the provider batch still holds gets its verdict (``lines.verdict``): it completes with its
line's body and usage, fails with the provider's error, ends cancelled, or goes back to live execution.
The writes are the live runner's own (``domain.jobs.repository.complete`` / ``fail`` /
``end_cancelled``), fenced by the provider batch's holder token, and each terminal one records the job's
webhook event in the same transaction (``domain.webhooks.events``). The caller sends the deliveries,
the completion notices and the batch finalizations once the transaction has committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from config.settings import Settings
from domain.jobs import repository as jobs
from domain.jobs.repository import Claim
from domain.provider_batches import repository
from domain.provider_batches.lines import LineResult, ReadLines, Verdict, verdict
from domain.status import JobStatus
from domain.storage.models import Job
from domain.tokens.estimates import UsageColumns, usage_columns
from domain.webhooks import events


@dataclass(frozen=True, slots=True)
class SettledJob:
    """One job settled, for the metrics: its tier, kind, model, fate, final status and usage."""

    tier: str
    kind: str
    model: str
    fate: str
    status: str | None
    usage: UsageColumns | None = None


@dataclass
class Settlement:
    """What settling did: jobs ended (by id, with their batch), jobs sent live, webhook deliveries."""

    ended: dict[str, str | None] = field(default_factory=dict)
    live: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    jobs: list[SettledJob] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def claim_of(job: Job, token: str) -> Claim:
    """The claim a provider batch holds on one of its jobs, for the live runner's fenced writes."""
    return Claim(
        job_id=job.id,
        token=token,
        attempt=job.attempts,
        kind=job.kind,
        model=job.model,
        tier=job.tier,
        request=job.request,
        estimated_tokens=job.estimated_tokens,
        has_webhook=job.webhook_url is not None,
        batch_id=job.batch_id,
    )


def settle_jobs(
    session: Session,
    provider_batch_id: str,
    read: ReadLines,
    *,
    missing_code: str,
    settings: Settings,
    now: datetime,
    limit: int | None = None,
) -> Settlement:
    """Settle the jobs the provider batch still holds (the first ``limit`` of them, by id), in the
    caller's transaction. Settling is idempotent: a job settled is no longer held, so a run that
    stopped half way is finished by the next one."""
    token = repository.holder_token(provider_batch_id)
    done = Settlement()
    for job in repository.held_jobs(session, provider_batch_id, limit=limit):
        fate, result = verdict(
            read.results.get(job.id),
            missing_code=missing_code,
            cancel_requested=job.cancel_requested_at is not None,
            deadline=job.deadline_at,
            now=now,
            live_margin_seconds=settings.provider_batch_live_margin_seconds,
        )
        done.note(fate.value)
        if fate is Verdict.live:
            if repository.to_live(session, job.id, token):
                done.live.append(job.id)
                done.jobs.append(SettledJob(job.tier, job.kind, job.model, fate.value, None))
            continue
        stored = _end(session, claim_of(job, token), fate, result)
        if stored is None:
            continue
        usage = _usage_of(job.kind, result) if fate is Verdict.complete else None
        done.jobs.append(SettledJob(job.tier, job.kind, job.model, fate.value, stored.value, usage))
        done.ended[job.id] = job.batch_id
        delivery = events.record_job_event(session, job.id, settings) if job.webhook_url else None
        if delivery is not None:
            done.deliveries.append(delivery)
    return done


def _usage_of(kind: str, result: LineResult) -> UsageColumns:
    usage = result.body.get("usage") if result.body is not None else None
    return usage_columns(kind, usage if isinstance(usage, dict) else None)


def _end(session: Session, claim: Claim, fate: Verdict, result: LineResult) -> JobStatus | None:
    if fate is Verdict.complete:
        assert result.body is not None
        usage = result.body.get("usage")
        return jobs.complete(
            session,
            claim,
            result=result.body,
            usage=usage if isinstance(usage, dict) else None,
            columns=usage_columns(claim.kind, usage if isinstance(usage, dict) else None),
        )
    if fate is Verdict.cancel:
        return JobStatus.cancelled if jobs.end_cancelled(session, claim) else None
    return jobs.fail(
        session,
        claim,
        error_type=result.error_code or "provider_batch_error",
        message=result.error_message or "the provider's Batch API returned an error for this request",
        status_code=result.status_code,
        body=result.body,
    )


def end_waiting_cancels(session: Session, settings: Settings) -> Settlement:
    """End cancelled the deferred jobs told to cancel before any provider batch took them."""
    done = Settlement()
    for job_id, token in repository.waiting_cancels(session):
        job = session.get(Job, job_id)
        if job is None or not jobs.end_cancelled(session, claim_of(job, token)):
            continue
        done.ended[job_id] = job.batch_id
        done.note("cancel")
        done.jobs.append(SettledJob(job.tier, job.kind, job.model, "cancel", JobStatus.cancelled.value))
        delivery = events.record_job_event(session, job_id, settings) if job.webhook_url else None
        if delivery is not None:
            done.deliveries.append(delivery)
    return done
