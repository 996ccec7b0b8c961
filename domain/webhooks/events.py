"""Events: what happened to a job (or a batch), as the webhook payload, recorded in an outbox.

The payload is ``{"id": "evt_…", "object": "event", "type", "created_at", "data"}``; for jobs ``data``
is the job exactly as ``GET /v1/jobs/{id}`` returns it. A ``result`` (or ``request``) bigger than
``BATCHERY_WEBHOOK_MAX_RESULT_BYTES`` is left out and ``result_omitted`` (``request_omitted``) says
so; the job can still be fetched in full.

``record_event`` is the one entry point: call it in the same transaction as the status change it
reports, then, after the commit, send the returned delivery id to the webhook queue. Batches use it
with their own ``batch.*`` types and the batch object as ``data``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from config.settings import Settings
from domain.ids import new_id
from domain.jobs import attempts as attempt_log
from domain.jobs.schemas import AttemptOut
from domain.jobs.views import job_out
from domain.status import JobStatus
from domain.storage.models import Job, JobAttempt
from domain.webhooks import repository as webhook_repository

JOB_EVENT_TYPES: dict[str, str] = {
    JobStatus.succeeded.value: "job.succeeded",
    JobStatus.failed.value: "job.failed",
    JobStatus.cancelled.value: "job.cancelled",
}
BATCH_EVENT_TYPES = frozenset({"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"})
EVENT_TYPES = frozenset(JOB_EVENT_TYPES.values()) | BATCH_EVENT_TYPES


def encode_payload(*, event_id: str, event_type: str, created_at: int, data: dict[str, Any]) -> str:
    """The event as the exact JSON text that is signed and sent on every attempt."""
    event = {"id": event_id, "object": "event", "type": event_type, "created_at": created_at, "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def job_event_data(
    job: Job, *, max_result_bytes: int, attempts: Sequence[JobAttempt] | None = None
) -> dict[str, Any]:
    """The job as GET returns it (with its attempt log when given), with an oversized ``result`` or
    ``request`` left out and flagged."""
    view = job_out(job)
    if attempts is not None:
        view.attempts_log = [AttemptOut.model_validate(row, from_attributes=True) for row in attempts]
    data = view.model_dump(mode="json")
    for field in ("result", "request"):
        value = data.get(field)
        too_big = value is not None and _json_size(value) > max_result_bytes
        if too_big:
            data[field] = None
        data[f"{field}_omitted"] = too_big
    return data


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def record_event(
    session: Session,
    *,
    tenant_id: str,
    event_type: str,
    subject_id: str,
    data: dict[str, Any],
    url: str,
    first_delay: float = 0.0,
) -> str:
    """Store one event for ``url`` as a pending delivery (in the caller's transaction); returns the
    delivery id to send to the webhook queue once the transaction has committed."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event_id = new_id("evt")
    payload = encode_payload(event_id=event_id, event_type=event_type, created_at=int(time.time()), data=data)
    delivery = webhook_repository.create_delivery(
        session,
        tenant_id=tenant_id,
        event_id=event_id,
        event_type=event_type,
        subject_id=subject_id,
        url=url,
        payload=payload,
        first_delay=first_delay,
    )
    return delivery.id


def record_job_event(session: Session, job_id: str, settings: Settings) -> str | None:
    """Record the terminal event of a job that has a webhook URL; None when there is nothing to send.
    Call it right after the status change, in the same transaction."""
    job = session.get(Job, job_id, populate_existing=True)
    event_type = JOB_EVENT_TYPES.get(job.status) if job is not None else None
    if job is None or not job.webhook_url or event_type is None:
        return None
    return record_event(
        session,
        tenant_id=job.tenant_id,
        event_type=event_type,
        subject_id=job.id,
        data=job_event_data(
            job,
            max_result_bytes=settings.webhook_max_result_bytes,
            attempts=attempt_log.list_attempts(session, job.id),
        ),
        url=job.webhook_url,
        first_delay=settings.webhook_retry_schedule[0],
    )
